package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/adapterd/adapterd/internal/transfer"
)

// DefaultEndpoint is the public Hub, used when HF_ENDPOINT is not set.
const DefaultEndpoint = "https://huggingface.co"

// Client talks to one hub endpoint with one token (which may be empty).
type Client struct {
	Endpoint    string // scheme://host[:port][/prefix], no trailing slash
	Token       string
	TokenSource string // where Token came from, for error hints
	HTTP        *http.Client
	UserAgent   string
	// CacheDir is a Hugging Face cache (HF_HUB_CACHE) whose verified
	// files are copied instead of downloaded again; "" for none.
	CacheDir string
	// Offline (HF_HUB_OFFLINE) reads the cache only: no request at all.
	Offline bool
	// Logger hears what is skipped without failing the fetch, such as a
	// cache that cannot be written; nil discards it.
	Logger *slog.Logger
	// Progress, when set, is told the bytes of path downloaded so far, as
	// they arrive.
	Progress func(path string, done, total int64)
	// MaxFileSize refuses a file larger than this before any byte of it
	// is fetched; 0 means DefaultMaxFileSize.
	MaxFileSize int64
}

// DefaultMaxFileSize fits the largest LoRA adapters, not full weights.
const DefaultMaxFileSize = transfer.DefaultMaxFileSize

// Limits on one tree listing, whatever the server sends: a hostile or
// broken hub that pages forever, or sends huge pages, is cut off with an
// error instead of growing the daemon's memory. Real adapter folders are
// far below them.
const (
	maxTreeEntries  = 100_000  // entries over all pages
	maxListingBytes = 32 << 20 // JSON over all pages
	maxPathLen      = 4096     // one entry's path, as PATH_MAX
	maxTreePages    = 10_000
)

// NewFromEnv builds a client the way huggingface_hub configures itself:
// HF_ENDPOINT, then the token from HF_TOKEN, HUGGING_FACE_HUB_TOKEN, or the
// token file under HF_HOME (default ~/.cache/huggingface), and the cache
// from HF_HUB_CACHE (default HF_HOME/hub).
func NewFromEnv(getenv func(string) string) (*Client, error) {
	ep := strings.TrimRight(strings.TrimSpace(getenv("HF_ENDPOINT")), "/")
	if ep == "" {
		ep = DefaultEndpoint
	}
	u, err := url.Parse(ep)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("HF_ENDPOINT %q is not an http(s) URL; set it like https://huggingface.co", redactURL(ep))
	}
	// A password in the endpoint would be shown wherever the endpoint is:
	// error hints, /v1/sources, the source record in the drop dir.
	// Refusing it is the one rule that cannot miss a place.
	if u.User != nil {
		// The user name may be the secret (https://TOKEN@host): hide all.
		shown := *u
		shown.User = url.User("xxxxx")
		return nil, fmt.Errorf("HF_ENDPOINT %s carries a user name or password; remove it (user:pass@) and put the token in HF_TOKEN or the token file", shown.String())
	}
	token, source := TokenFromEnv(getenv)
	c := New(ep, token, source)
	c.CacheDir = CacheDirFromEnv(getenv)
	switch strings.ToUpper(strings.TrimSpace(getenv("HF_HUB_OFFLINE"))) {
	case "1", "ON", "YES", "TRUE":
		c.Offline = true
	}
	return c, nil
}

// New returns a client for endpoint. Its HTTP client drops Authorization on
// any redirect to another origin, refuses a redirect from https to http
// for a request that carried it, and cuts a transfer idle for
// DefaultIdleTimeout (SetIdleTimeout changes it).
func New(endpoint, token, source string) *Client {
	c := &Client{
		Endpoint:    strings.TrimRight(endpoint, "/"),
		Token:       token,
		TokenSource: source,
		HTTP:        &http.Client{CheckRedirect: guardRedirect},
		UserAgent:   "adapterd",
	}
	c.SetIdleTimeout(transfer.DefaultIdleTimeout, "transfers.idle_timeout")
	return c
}

// SetIdleTimeout cuts any request that gets no byte for idle; setting
// names what set it, for the error. Response headers wait as long.
func (c *Client) SetIdleTimeout(idle time.Duration, setting string) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	c.HTTP.Transport = transfer.Transport(t, idle, setting)
}

// redactURL hides the userinfo of a URL that did not parse.
func redactURL(s string) string {
	if i := strings.LastIndex(s, "@"); i >= 0 {
		if j := strings.Index(s, "://"); j >= 0 && j < i {
			return s[:j+3] + "xxxxx@" + s[i+1:]
		}
		return "xxxxx@" + s[i+1:]
	}
	return s
}

// TokenFromEnv finds the token in the order huggingface_hub does and says
// where it came from. An empty token means anonymous access.
func TokenFromEnv(getenv func(string) string) (token, source string) {
	for _, k := range []string{"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"} {
		if v := strings.TrimSpace(getenv(k)); v != "" {
			return v, k
		}
	}
	home := hfHome(getenv)
	if home == "" {
		return "", ""
	}
	path := filepath.Join(home, "token")
	b, err := os.ReadFile(path)
	if err != nil {
		return "", ""
	}
	if v := strings.TrimSpace(string(b)); v != "" {
		return v, path
	}
	return "", ""
}

// guardRedirect keeps the bearer token on the hub: a redirect to another
// origin (a CDN, or anyone a compromised mirror points at) gets the
// request without it, and a redirect from https to http of a request that
// carried it is refused, since the token would have gone in cleartext had
// the origin been the same.
func guardRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	first := via[0]
	if first.Header.Get("Authorization") != "" && first.URL.Scheme == "https" && req.URL.Scheme == "http" {
		return fmt.Errorf("refused a redirect from https to http (%s) for a request with a token; the token never travels in cleartext", req.URL.Redacted())
	}
	if !sameOrigin(req.URL, first.URL) {
		req.Header.Del("Authorization")
	}
	return nil
}

// sameOrigin compares scheme, host and port, with the scheme's default
// port filled in: Go's own redirect rule compares host names only, so
// http://h:other-port would get the token.
func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Hostname(), b.Hostname()) && port(a) == port(b)
}

func port(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if strings.EqualFold(u.Scheme, "https") {
		return "443"
	}
	return "80"
}

// Entry is one item of the tree listing.
type Entry struct {
	Type string `json:"type"` // "file" or "directory"
	Path string `json:"path"`
	Size int64  `json:"size"`
	Oid  string `json:"oid"`
	LFS  *struct {
		Oid  string `json:"oid"`
		Size int64  `json:"size"`
	} `json:"lfs,omitempty"`
}

// FileInfo is what the HEAD of a resolve URL says about one file.
type FileInfo struct {
	Commit   string // X-Repo-Commit
	ETag     string // X-Linked-Etag, else ETag, unquoted
	Size     int64  // X-Linked-Size, else Content-Length
	Location string // where the bytes are, when the hub redirects
}

func (c *Client) newRequest(ctx context.Context, method, rawURL string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, rawURL, nil)
	if err != nil {
		return nil, err
	}
	if c.UserAgent != "" {
		req.Header.Set("User-Agent", c.UserAgent)
	}
	if c.Token == "" {
		return req, nil
	}
	ep, err := url.Parse(c.Endpoint)
	if err != nil {
		return nil, err
	}
	if ep.Scheme == "https" && req.URL.Scheme == "http" && strings.EqualFold(ep.Hostname(), req.URL.Hostname()) {
		return nil, fmt.Errorf("refused to follow %s from the hub at %s: https to http on the hub's own host, where the token would go in cleartext", req.URL.Redacted(), c.Endpoint)
	}
	if sameOrigin(req.URL, ep) {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	return req, nil
}

// escapePath escapes each part of a slash-separated path.
func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

// getJSON GETs rawURL into v and returns the response headers.
func (c *Client) getJSON(ctx context.Context, rawURL string, v any, what requestDesc) (http.Header, error) {
	req, err := c.newRequest(ctx, http.MethodGet, rawURL)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %v; check HF_ENDPOINT (%s) and the network", what, unwrapURL(err), c.Endpoint)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, c.statusError(resp, what)
	}
	// A revision is small; a bound keeps a hostile server from making us
	// buffer without end.
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v); err != nil {
		return nil, fmt.Errorf("%s: bad JSON from %s: %v", what, c.Endpoint, err)
	}
	return resp.Header, nil
}

// ResolveRevision turns a branch, tag or commit into the commit it names.
func (c *Client) ResolveRevision(ctx context.Context, repo, revision string) (string, error) {
	if revision == "" {
		revision = "main"
	}
	var info struct {
		Sha string `json:"sha"`
	}
	u := fmt.Sprintf("%s/api/models/%s/revision/%s", c.Endpoint, escapePath(repo), url.PathEscape(revision))
	if _, err := c.getJSON(ctx, u, &info, requestDesc{repo: repo, revision: revision}); err != nil {
		return "", err
	}
	if !commitRE.MatchString(info.Sha) {
		return "", fmt.Errorf("hub repo %s revision %s: the server answered no commit (sha %q); check HF_ENDPOINT (%s)", repo, revision, info.Sha, c.Endpoint)
	}
	return info.Sha, nil
}

var commitRE = regexp.MustCompile(`^[0-9a-f]{40}$`)

// linkNextRE finds the rel="next" URL of a Link header.
var linkNextRE = regexp.MustCompile(`<([^>]+)>\s*;\s*rel="?next"?`)

// ListFiles lists the files under path at commit, following the Link
// header's rel="next" pages, and keeps the entries keep accepts (all when
// keep is nil); seen counts every entry. Pages are decoded entry by entry
// and the listing is bounded (maxTreeEntries, maxListingBytes,
// maxPathLen), so memory holds the kept entries and one entry at a time,
// whatever the server sends.
func (c *Client) ListFiles(ctx context.Context, repo, commit, path string, recursive bool, keep func(Entry) bool) (kept []Entry, seen int, err error) {
	u := fmt.Sprintf("%s/api/models/%s/tree/%s", c.Endpoint, escapePath(repo), url.PathEscape(commit))
	if path != "" {
		u += "/" + escapePath(path)
	}
	u += "?recursive=" + strconv.FormatBool(recursive) + "&expand=false"
	what := requestDesc{repo: repo, revision: commit, file: path}
	budget := int64(maxListingBytes)
	for pages := 0; u != ""; pages++ {
		if pages >= maxTreePages {
			return nil, seen, fmt.Errorf("%s: the tree listing has more than %d pages; check HF_ENDPOINT (%s)", what, maxTreePages, c.Endpoint)
		}
		next, err := c.listPage(ctx, u, what, &budget, func(e Entry) error {
			seen++
			if seen > maxTreeEntries {
				return fmt.Errorf("the tree listing has more than %d entries, more than any adapter folder; check the subfolder and HF_ENDPOINT (%s)", maxTreeEntries, c.Endpoint)
			}
			if len(e.Path) > maxPathLen {
				return fmt.Errorf("the tree listing has a path of %d bytes, more than %d; check HF_ENDPOINT (%s)", len(e.Path), maxPathLen, c.Endpoint)
			}
			if keep == nil || keep(e) {
				kept = append(kept, e)
			}
			return nil
		})
		if err != nil {
			return nil, seen, err
		}
		u = next
	}
	return kept, seen, nil
}

// listPage GETs one page of a tree listing, hands each entry to each, and
// returns the next page's URL ("" for none). budget is what is left of
// maxListingBytes; the page's bytes are taken from it.
func (c *Client) listPage(ctx context.Context, u string, what requestDesc, budget *int64, each func(Entry) error) (string, error) {
	req, err := c.newRequest(ctx, http.MethodGet, u)
	if err != nil {
		return "", fmt.Errorf("%s: %v", what, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return "", fmt.Errorf("%s: %v; check HF_ENDPOINT (%s) and the network", what, unwrapURL(err), c.Endpoint)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", c.statusError(resp, what)
	}
	body := &io.LimitedReader{R: resp.Body, N: *budget + 1}
	defer func() { *budget = max(body.N-1, 0) }()
	tooBig := func(err error) error {
		if body.N <= 0 {
			return fmt.Errorf("%s: the tree listing is larger than %d MiB, more than any adapter folder; check the subfolder and HF_ENDPOINT (%s)", what, maxListingBytes>>20, c.Endpoint)
		}
		return fmt.Errorf("%s: bad JSON from %s: %v", what, c.Endpoint, unwrapURL(err))
	}
	dec := json.NewDecoder(body)
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		if err == nil {
			err = fmt.Errorf("the listing is not a JSON list")
		}
		return "", tooBig(err)
	}
	for dec.More() {
		var e Entry
		if err := dec.Decode(&e); err != nil {
			return "", tooBig(err)
		}
		if err := each(e); err != nil {
			return "", fmt.Errorf("%s: %v", what, err)
		}
	}
	if _, err := dec.Token(); err != nil {
		return "", tooBig(err)
	}
	m := linkNextRE.FindStringSubmatch(resp.Header.Get("Link"))
	if m == nil {
		return "", nil
	}
	next, err := url.Parse(m[1])
	if err != nil {
		return "", fmt.Errorf("%s: bad Link header %q", what, resp.Header.Get("Link"))
	}
	base, _ := url.Parse(c.Endpoint)
	return base.ResolveReference(next).String(), nil
}

// unwrapURL drops the url.Error wrapper, whose URL the message repeats,
// and keeps the cause (an idle cut says which setting cut it).
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// resolveURL is where a file's bytes are served.
func (c *Client) resolveURL(repo, commit, path string) string {
	return fmt.Sprintf("%s/%s/resolve/%s/%s", c.Endpoint, escapePath(repo), url.PathEscape(commit), escapePath(path))
}

// Stat resolves one file with HEAD, as huggingface_hub's get_hf_file_metadata
// does: no compression, redirects not followed (a relative one, which a
// renamed repo answers with, is), and the X-Linked-* headers preferred,
// because on a redirect the plain ETag and Content-Length describe the
// redirect, not the file.
func (c *Client) Stat(ctx context.Context, repo, commit, path string) (FileInfo, error) {
	what := requestDesc{repo: repo, revision: commit, file: path}
	u := c.resolveURL(repo, commit, path)
	noFollow := *c.HTTP
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for hops := 0; ; hops++ {
		req, err := c.newRequest(ctx, http.MethodHead, u)
		if err != nil {
			return FileInfo{}, err
		}
		req.Header.Set("Accept-Encoding", "identity")
		resp, err := noFollow.Do(req)
		if err != nil {
			return FileInfo{}, fmt.Errorf("%s: %v; check HF_ENDPOINT (%s) and the network", what, unwrapURL(err), c.Endpoint)
		}
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if resp.StatusCode >= 300 && resp.StatusCode < 400 && loc != "" {
			target, err := req.URL.Parse(loc)
			if err != nil {
				return FileInfo{}, fmt.Errorf("%s: bad redirect %q", what, loc)
			}
			if strings.HasPrefix(loc, "/") && hops < 5 {
				u = target.String()
				continue
			}
			return c.fileInfo(resp.Header, target.String(), what)
		}
		if resp.StatusCode != http.StatusOK {
			return FileInfo{}, c.statusError(resp, what)
		}
		return c.fileInfo(resp.Header, "", what)
	}
}

func (c *Client) fileInfo(h http.Header, location string, what requestDesc) (FileInfo, error) {
	fi := FileInfo{Commit: h.Get("X-Repo-Commit"), Location: location}
	fi.ETag = h.Get("X-Linked-Etag")
	if fi.ETag == "" {
		fi.ETag = h.Get("ETag")
	}
	fi.ETag = normalizeETag(fi.ETag)
	size := h.Get("X-Linked-Size")
	if size == "" {
		size = h.Get("Content-Length")
	}
	n, err := strconv.ParseInt(size, 10, 64)
	if err != nil || n < 0 {
		return FileInfo{}, fmt.Errorf("%s: the server gave no file size (X-Linked-Size or Content-Length); check HF_ENDPOINT (%s)", what, c.Endpoint)
	}
	fi.Size = n
	if fi.ETag == "" {
		return FileInfo{}, fmt.Errorf("%s: the server gave no ETag, so the file cannot be verified; check HF_ENDPOINT (%s)", what, c.Endpoint)
	}
	return fi, nil
}

// normalizeETag drops the weak prefix and the quotes.
func normalizeETag(s string) string {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "W/")
	return strings.Trim(s, `"`)
}

// requestDesc names what a request was for, for error messages.
type requestDesc struct{ repo, revision, file string }

func (d requestDesc) String() string {
	s := "hub repo " + d.repo
	if d.revision != "" {
		s += " revision " + d.revision
	}
	if d.file != "" {
		s += " file " + d.file
	}
	return s
}

// statusError turns an error response into one line that says what to do,
// following X-Error-Code as huggingface_hub's hf_raise_for_status does.
func (c *Client) statusError(resp *http.Response, what requestDesc) error {
	code := resp.Header.Get("X-Error-Code")
	msg := strings.TrimSpace(resp.Header.Get("X-Error-Message"))
	if msg == "" && resp.Body != nil {
		var body struct {
			Error string `json:"error"`
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if json.Unmarshal(b, &body) == nil {
			msg = body.Error
		}
	}
	msg = strings.Join(strings.Fields(msg), " ")
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	detail := ""
	if msg != "" {
		detail = " (" + msg + ")"
	}
	tokenHint := "set HF_TOKEN to a token that can read it"
	if c.Token != "" {
		tokenHint = "the token from " + c.TokenSource + " was refused; set HF_TOKEN to a token that can read it"
	}
	var hint string
	switch {
	case code == "GatedRepo" && c.Token != "":
		hint = "gated repo: accept its conditions on its page, " + c.Endpoint + "/" + what.repo + ", with the account whose token is in " + c.TokenSource
	case code == "GatedRepo":
		hint = "gated repo: accept its conditions on its page, " + c.Endpoint + "/" + what.repo + ", then set HF_TOKEN to that account's token"
	case code == "RepoNotFound":
		hint = "repo not found: check the name (org/name); a private repo needs HF_TOKEN"
	case code == "RevisionNotFound":
		hint = "revision not found: check the revision (a branch, tag or commit)"
	case code == "EntryNotFound":
		hint = "file not found at this revision: check the subfolder and the file"
	case code == "DisabledRepo":
		hint = "the repo is disabled on the hub"
	case resp.StatusCode == http.StatusUnauthorized:
		hint = "not authorized: " + tokenHint + "; if the name is wrong the hub also answers 401"
	case resp.StatusCode == http.StatusForbidden:
		hint = "forbidden: " + tokenHint + "; a gated repo also needs its conditions accepted on the website"
	case resp.StatusCode == http.StatusNotFound:
		hint = "not found: check the repo name and the revision"
	case resp.StatusCode == http.StatusTooManyRequests:
		hint = "rate limited: try again later, or set HF_TOKEN"
	default:
		hint = "check HF_ENDPOINT (" + c.Endpoint + ") or try again later"
	}
	return &StatusError{Status: resp.StatusCode, Code: code, msg: fmt.Sprintf("%s: HTTP %d%s: %s", what, resp.StatusCode, detail, hint)}
}

// StatusError is an error response from the hub. Code is X-Error-Code.
type StatusError struct {
	Status int
	Code   string
	msg    string
}

func (e *StatusError) Error() string { return e.msg }

// retryPause is the wait before resuming a download that broke off.
var retryPause = 500 * time.Millisecond

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
}

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
		return nil, fmt.Errorf("HF_ENDPOINT %q is not an http(s) URL; set it like https://huggingface.co", ep)
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
// any redirect to another host.
func New(endpoint, token, source string) *Client {
	return &Client{
		Endpoint:    strings.TrimRight(endpoint, "/"),
		Token:       token,
		TokenSource: source,
		HTTP:        &http.Client{CheckRedirect: stripAuthOnHostChange},
		UserAgent:   "adapterd",
	}
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

// stripAuthOnHostChange keeps the bearer token on the hub: a redirect to
// another host (a CDN, or anyone a compromised mirror points at) gets the
// request without it.
func stripAuthOnHostChange(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if req.URL.Host != via[0].URL.Host {
		req.Header.Del("Authorization")
	}
	return nil
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
	if c.Token != "" && c.sameHost(req.URL) {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	return req, nil
}

func (c *Client) sameHost(u *url.URL) bool {
	ep, err := url.Parse(c.Endpoint)
	return err == nil && ep.Host == u.Host
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
		return nil, fmt.Errorf("%s: %v; check HF_ENDPOINT (%s) and the network", what, err, c.Endpoint)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, c.statusError(resp, what)
	}
	// A listing page or revision is small; a bound keeps a hostile server
	// from making us buffer without end.
	if err := json.NewDecoder(io.LimitReader(resp.Body, 32<<20)).Decode(v); err != nil {
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
// header's rel="next" pages.
func (c *Client) ListFiles(ctx context.Context, repo, commit, path string, recursive bool) ([]Entry, error) {
	u := fmt.Sprintf("%s/api/models/%s/tree/%s", c.Endpoint, escapePath(repo), url.PathEscape(commit))
	if path != "" {
		u += "/" + escapePath(path)
	}
	u += "?recursive=" + strconv.FormatBool(recursive) + "&expand=false"
	var all []Entry
	for pages := 0; u != ""; pages++ {
		if pages >= 10000 {
			return nil, fmt.Errorf("hub repo %s: the tree listing has more than 10000 pages; check HF_ENDPOINT (%s)", repo, c.Endpoint)
		}
		var page []Entry
		h, err := c.getJSON(ctx, u, &page, requestDesc{repo: repo, revision: commit, file: path})
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		u = ""
		if m := linkNextRE.FindStringSubmatch(h.Get("Link")); m != nil {
			next, err := url.Parse(m[1])
			if err != nil {
				return nil, fmt.Errorf("hub repo %s: bad Link header %q", repo, h.Get("Link"))
			}
			base, _ := url.Parse(c.Endpoint)
			u = base.ResolveReference(next).String()
		}
	}
	return all, nil
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
			return FileInfo{}, fmt.Errorf("%s: %v; check HF_ENDPOINT (%s) and the network", what, err, c.Endpoint)
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

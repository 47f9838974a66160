// Package hubtest is a fake Hugging Face Hub for tests: two hosts, the hub
// and a CDN that large (LFS) files redirect to, with private and gated
// repos, branches and tags, paged tree listings and injectable faults.
//
// It is not shaped to adapterd's client: internal/hub's tests have the
// official JS client (@huggingface/hub) download from it too, so a fake that
// drifted from the real protocol would fail there.
package hubtest

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// Fault is what a file's download does wrong.
type Fault int

const (
	None         Fault = iota
	Corrupt            // the bytes served do not match the ETag
	Truncate           // every GET drops the connection halfway
	DropOnce           // the first GET drops halfway; Range resumes work
	IgnoreRange        // drops halfway once, then answers Range with 200 and the whole file
	Trickle            // sends the body one byte every TrickleGap, as a stalled link does
	LieAboutSize       // the HEAD announces LieSize bytes (X-Linked-Size, Content-Length)
)

// Hostile behaviours of the whole hub, for tests that attack the client
// rather than one file: SetHostile turns them on.
type Hostile struct {
	// PagesForever makes every tree listing endless: each page holds
	// PageBytes of entries whose names no adapter uses, and links to one
	// more page.
	PagesForever bool
	PageBytes    int // default 1 MiB
	NameBytes    int // each useless name's length (default 200)
	// TrickleGap is the pause between the bytes of a Trickle file
	// (default 5s).
	TrickleGap time.Duration
	// LieSize is what a LieAboutSize file announces (default 1 TiB).
	LieSize int64
}

// Repo is one model repo.
type Repo struct {
	Private bool
	Gated   bool                         // files need a token whose owner accepted the gate
	Refs    map[string]string            // branch or tag -> commit
	Commits map[string]map[string][]byte // commit -> path -> content
}

// Server is the fake hub. Fields may be set before the first request.
type Server struct {
	Hub, CDN *httptest.Server
	// Token is the one token the hub accepts; GateToken is a valid token
	// whose owner has accepted every gate (Token has not).
	Token, GateToken string
	PageSize         int   // tree entries per page (default 2, to force paging)
	LFSThreshold     int64 // files at least this big are LFS (default 64)

	mu        sync.Mutex
	repos     map[string]*Repo
	faults    map[string]Fault // "repo/path" -> fault
	gets      map[string]int   // "repo/path" -> GETs of the bytes so far
	cdnAuth   []string         // Authorization headers the CDN received
	cdnHits   int
	treePages int
	served    int64                 // bytes of file content sent, by the hub and the CDN
	sums      map[[2]uintptr]string // sliceID -> SHA256 of committed files
	commitN   int
	hostile   Hostile
}

// SetHostile turns the hub's hostile behaviours on (see Hostile); safe
// while the hub serves.
func (s *Server) SetHostile(h Hostile) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hostile = h
}

func (s *Server) getHostile() Hostile {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hostile
}

// New starts the hub on 127.0.0.1 and the CDN on 127.0.0.2, so they are
// different hosts, not just different ports.
func New(t testing.TB) *Server {
	t.Helper()
	return NewWithCDNOn(t, "127.0.0.2")
}

// NewWithCDNOn is New with the CDN on address ip. With 127.0.0.1 the CDN
// is the hub's host on another port: a client that compares host names
// only (as Go's http.Client does) would still send it the token.
func NewWithCDNOn(t testing.TB, ip string) *Server {
	t.Helper()
	s := &Server{
		Token:        "hf_fakeTokenForTests",
		GateToken:    "hf_fakeTokenGateAccepted",
		PageSize:     2,
		LFSThreshold: 64,
		repos:        map[string]*Repo{},
		faults:       map[string]Fault{},
		gets:         map[string]int{},
	}
	s.Hub = httptest.NewServer(http.HandlerFunc(s.serveHub))
	s.CDN = httptest.NewUnstartedServer(http.HandlerFunc(s.serveCDN))
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		s.Hub.Close()
		t.Fatalf("the fake CDN needs %s (another loopback host): %v", ip, err)
	}
	s.CDN.Listener.Close()
	s.CDN.Listener = l
	s.CDN.Start()
	t.Cleanup(func() { s.Hub.Close(); s.CDN.Close() })
	return s
}

// URL is the hub's endpoint (what HF_ENDPOINT is set to).
func (s *Server) URL() string { return s.Hub.URL }

// Commit adds a commit holding files to repo (creating the repo), points
// ref at it, and returns its id.
func (s *Server) Commit(repo, ref string, files map[string][]byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repos[repo]
	if r == nil {
		r = &Repo{Refs: map[string]string{}, Commits: map[string]map[string][]byte{}}
		s.repos[repo] = r
	}
	s.commitN++
	sum := sha1.Sum([]byte(fmt.Sprintf("%s %d %d", repo, s.commitN, time.Now().UnixNano())))
	id := hex.EncodeToString(sum[:])
	cp := map[string][]byte{}
	if s.sums == nil {
		s.sums = map[[2]uintptr]string{}
	}
	for k, v := range files {
		cp[k] = v
		if len(v) > 0 {
			s.sums[sliceID(v)] = SHA256(v)
		}
	}
	r.Commits[id] = cp
	if ref != "" {
		r.Refs[ref] = id
	}
	return id
}

// Tag points ref (a branch or tag) at commit.
func (s *Server) Tag(repo, ref, commit string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repos[repo].Refs[ref] = commit
}

// SetRepo changes a repo's access: private, gated.
func (s *Server) SetRepo(repo string, private, gated bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repos[repo].Private = private
	s.repos[repo].Gated = gated
}

// DeleteRepo deletes repo, as its owner would on the website: from then on
// the hub answers RepoNotFound for it.
func (s *Server) DeleteRepo(repo string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.repos, repo)
}

// Fault makes file (a path in repo) misbehave when its bytes are fetched.
func (s *Server) Fault(repo, file string, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[repo+"/"+file] = f
}

// CDNAuthorization lists the Authorization headers the CDN was sent (it
// must be none: the token belongs to the hub) and how many requests it had.
func (s *Server) CDNAuthorization() (auth []string, hits int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.cdnAuth...), s.cdnHits
}

// Gets is how many GETs of a file's bytes the hub and CDN served.
func (s *Server) Gets(repo, file string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gets[repo+"/"+file]
}

// BytesServed is how many bytes of file content the hub and the CDN have
// sent so far (bodies of GETs of the files, not listings or headers).
func (s *Server) BytesServed() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.served
}

// TreePages is how many tree listing pages were served.
func (s *Server) TreePages() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.treePages
}

// GitBlobSHA1 is the git object id of content: a small file's ETag.
func GitBlobSHA1(b []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", len(b))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// SHA256 is an LFS file's ETag.
func SHA256(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func hubError(w http.ResponseWriter, status int, code, msg string) {
	if code != "" {
		w.Header().Set("X-Error-Code", code)
	}
	w.Header().Set("X-Error-Message", msg)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// segments splits the escaped path and unescapes each part.
func segments(r *http.Request) []string {
	parts := strings.Split(strings.Trim(r.URL.EscapedPath(), "/"), "/")
	for i, p := range parts {
		if u, err := url.PathUnescape(p); err == nil {
			parts[i] = u
		}
	}
	return parts
}

// access decides what a request may see of repo, as the Hub does: a
// private repo looks missing without the right token, and a gated repo's
// files need a token whose owner accepted the gate.
func (s *Server) access(w http.ResponseWriter, r *http.Request, name string, files bool) (*Repo, bool) {
	auth := r.Header.Get("Authorization")
	token := strings.TrimPrefix(auth, "Bearer ")
	valid := token == s.Token || token == s.GateToken
	if auth != "" && !valid {
		hubError(w, http.StatusUnauthorized, "", "Invalid credentials in Authorization header")
		return nil, false
	}
	s.mu.Lock()
	repo := s.repos[name]
	s.mu.Unlock()
	if repo == nil || (repo.Private && !valid) {
		hubError(w, http.StatusUnauthorized, "RepoNotFound", "Repository Not Found for url: "+r.URL.String()+".")
		return nil, false
	}
	if files && repo.Gated {
		if !valid {
			hubError(w, http.StatusUnauthorized, "GatedRepo", "Access to model "+name+" is restricted. You must have access to it and be authenticated to access it. Please log in.")
			return nil, false
		}
		if token != s.GateToken {
			hubError(w, http.StatusForbidden, "GatedRepo", "Access to model "+name+" is restricted and you are not in the authorized list. Visit https://huggingface.co/"+name+" to ask for access.")
			return nil, false
		}
	}
	return repo, true
}

func (s *Server) resolveRev(w http.ResponseWriter, repo *Repo, rev string) (string, map[string][]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	commit := rev
	if c, ok := repo.Refs[rev]; ok {
		commit = c
	}
	files, ok := repo.Commits[commit]
	if !ok {
		hubError(w, http.StatusNotFound, "RevisionNotFound", "Invalid rev id: "+rev)
		return "", nil, false
	}
	return commit, files, true
}

func (s *Server) serveHub(w http.ResponseWriter, r *http.Request) {
	p := segments(r)
	switch {
	case len(p) >= 6 && p[0] == "api" && p[1] == "models" && p[4] == "revision" && r.Method == http.MethodGet:
		s.serveRevision(w, r, p[2]+"/"+p[3], strings.Join(p[5:], "/"))
	case len(p) >= 6 && p[0] == "api" && p[1] == "models" && p[4] == "tree" && r.Method == http.MethodGet:
		s.serveTree(w, r, p[2]+"/"+p[3], p[5], strings.Join(p[6:], "/"))
	case len(p) >= 5 && p[0] == "api" && p[1] == "models" && p[4] == "paths-info" && r.Method == http.MethodPost:
		s.servePathsInfo(w, r, p[2]+"/"+p[3], strings.Join(p[5:], "/"))
	case len(p) >= 5 && p[2] == "resolve" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		s.serveResolve(w, r, p[0]+"/"+p[1], p[3], strings.Join(p[4:], "/"))
	default:
		hubError(w, http.StatusNotFound, "", "Sorry, we can't find the page you are looking for.")
	}
}

func (s *Server) serveRevision(w http.ResponseWriter, r *http.Request, name, rev string) {
	repo, ok := s.access(w, r, name, false)
	if !ok {
		return
	}
	commit, files, ok := s.resolveRev(w, repo, rev)
	if !ok {
		return
	}
	var siblings []map[string]string
	for f := range files {
		siblings = append(siblings, map[string]string{"rfilename": f})
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"id": name, "modelId": name, "sha": commit, "private": repo.Private, "gated": repo.Gated, "siblings": siblings})
}

type lfsInfo struct {
	Oid         string `json:"oid"`
	Size        int64  `json:"size"`
	PointerSize int    `json:"pointerSize"`
}

type treeEntry struct {
	Type string   `json:"type"`
	Oid  string   `json:"oid"`
	Size int64    `json:"size"`
	Path string   `json:"path"`
	LFS  *lfsInfo `json:"lfs,omitempty"`
}

func (s *Server) isLFS(b []byte) bool { return int64(len(b)) >= s.LFSThreshold }

// entry is a file's tree entry: the git id of the file, or for an LFS file
// that of its pointer, with the LFS id beside it.
func (s *Server) entry(p string, b []byte) treeEntry {
	if !s.isLFS(b) {
		return treeEntry{Type: "file", Oid: GitBlobSHA1(b), Size: int64(len(b)), Path: p}
	}
	ptr := s.pointer(b)
	return treeEntry{Type: "file", Oid: GitBlobSHA1(ptr), Size: int64(len(b)), Path: p,
		LFS: &lfsInfo{Oid: s.sha256(b), Size: int64(len(b)), PointerSize: len(ptr)}}
}

func (s *Server) serveTree(w http.ResponseWriter, r *http.Request, name, rev, dir string) {
	repo, ok := s.access(w, r, name, false)
	if !ok {
		return
	}
	_, files, ok := s.resolveRev(w, repo, rev)
	if !ok {
		return
	}
	if s.getHostile().PagesForever {
		s.servePageForever(w, r)
		return
	}
	recursive := r.URL.Query().Get("recursive") == "true"
	prefix := ""
	if dir != "" {
		prefix = dir + "/"
	}
	seen := map[string]bool{}
	var entries []treeEntry
	for p, b := range files {
		if !strings.HasPrefix(p, prefix) {
			continue
		}
		rest := strings.TrimPrefix(p, prefix)
		// Every folder on the way is an entry of its own.
		parts := strings.Split(rest, "/")
		for i := 1; i < len(parts); i++ {
			d := prefix + strings.Join(parts[:i], "/")
			if !seen[d] && (recursive || i == 1) {
				seen[d] = true
				entries = append(entries, treeEntry{Type: "directory", Oid: GitBlobSHA1([]byte(d)), Path: d})
			}
		}
		if len(parts) > 1 && !recursive {
			continue
		}
		e := s.entry(p, b)
		entries = append(entries, e)
	}
	if len(entries) == 0 && dir != "" {
		hubError(w, http.StatusNotFound, "EntryNotFound", dir+" does not exist on \""+rev+"\"")
		return
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Path < entries[j].Path })
	start, _ := strconv.Atoi(r.URL.Query().Get("cursor"))
	end := min(start+max(s.PageSize, 1), len(entries))
	start = min(start, end)
	if end < len(entries) {
		next := *r.URL
		q := next.Query()
		q.Set("cursor", strconv.Itoa(end))
		next.RawQuery = q.Encode()
		w.Header().Set("Link", fmt.Sprintf("<%s%s>; rel=\"next\"", s.Hub.URL, next.RequestURI()))
	}
	s.mu.Lock()
	s.treePages++
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(entries[start:end])
}

// servePageForever answers a tree listing with one full page of useless
// file names and a Link to the next, without end.
func (s *Server) servePageForever(w http.ResponseWriter, r *http.Request) {
	h := s.getHostile()
	size := h.PageBytes
	if size <= 0 {
		size = 1 << 20
	}
	n, _ := strconv.Atoi(r.URL.Query().Get("cursor"))
	next := *r.URL
	q := next.Query()
	q.Set("cursor", strconv.Itoa(n+1))
	next.RawQuery = q.Encode()
	w.Header().Set("Link", fmt.Sprintf("<%s%s>; rel=\"next\"", s.Hub.URL, next.RequestURI()))
	w.Header().Set("Content-Type", "application/json")
	s.mu.Lock()
	s.treePages++
	s.mu.Unlock()
	bw := bufio.NewWriter(w)
	bw.WriteString("[")
	pad := strings.Repeat("x", max(h.NameBytes, 200))
	for i, written := 0, 0; written < size; i++ {
		if i > 0 {
			bw.WriteString(",")
		}
		e := fmt.Sprintf(`{"type":"file","oid":"%040d","size":1,"path":"junk-%d-%d-%s.txt"}`, i, n, i, pad)
		bw.WriteString(e)
		written += len(e) + 1
	}
	bw.WriteString("]")
	bw.Flush()
}

// servePathsInfo answers POST /api/models/{repo}/paths-info/{rev}, which
// the JS client's downloadFileToCacheDir asks for a file's etag and last
// commit: {"paths": [...], "expand": bool} in, one entry per path found
// out.
func (s *Server) servePathsInfo(w http.ResponseWriter, r *http.Request, name, rev string) {
	repo, ok := s.access(w, r, name, false)
	if !ok {
		return
	}
	commit, files, ok := s.resolveRev(w, repo, rev)
	if !ok {
		return
	}
	var req struct {
		Paths  []string `json:"paths"`
		Expand bool     `json:"expand"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		hubError(w, http.StatusBadRequest, "", "bad paths-info request: "+err.Error())
		return
	}
	type lastCommit struct {
		ID    string `json:"id"`
		Title string `json:"title"`
		Date  string `json:"date"`
	}
	type entry struct {
		treeEntry
		LastCommit *lastCommit `json:"lastCommit,omitempty"`
	}
	out := []entry{}
	for _, p := range req.Paths {
		b, ok := files[p]
		if !ok {
			continue
		}
		e := entry{treeEntry: s.entry(p, b)}
		if req.Expand {
			e.LastCommit = &lastCommit{ID: commit, Title: "fake commit", Date: "2026-01-01T00:00:00.000Z"}
		}
		out = append(out, e)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

// pointer is the git-lfs pointer file that stands in the repo for b.
func (s *Server) pointer(b []byte) []byte {
	return []byte(fmt.Sprintf("version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n", s.sha256(b), len(b)))
}

// sha256 is SHA256(b), remembered for the files of every commit: a
// benchmark's 256 MiB file would otherwise be hashed again at each request,
// which is the fake's cost, not the client's.
func (s *Server) sha256(b []byte) string {
	s.mu.Lock()
	sum, ok := s.sums[sliceID(b)]
	s.mu.Unlock()
	if ok {
		return sum
	}
	return SHA256(b)
}

// sliceID names a file's bytes by where they are. The server holds every
// committed slice, so no other slice can take its place while it lives.
func sliceID(b []byte) [2]uintptr {
	return [2]uintptr{uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b))}
}

func (s *Server) serveResolve(w http.ResponseWriter, r *http.Request, name, rev, file string) {
	repo, ok := s.access(w, r, name, true)
	if !ok {
		return
	}
	commit, files, ok := s.resolveRev(w, repo, rev)
	if !ok {
		return
	}
	b, ok := files[file]
	if !ok {
		w.Header().Set("X-Repo-Commit", commit)
		hubError(w, http.StatusNotFound, "EntryNotFound", file+" does not exist on \""+rev+"\"")
		return
	}
	w.Header().Set("X-Repo-Commit", commit)
	s.mu.Lock()
	fault := s.faults[name+"/"+file]
	s.mu.Unlock()
	if fault == LieAboutSize && r.Method == http.MethodHead {
		lie := s.getHostile().LieSize
		if lie <= 0 {
			lie = 1 << 40
		}
		w.Header().Set("X-Linked-Etag", `"`+s.sha256(b)+`"`)
		w.Header().Set("X-Linked-Size", strconv.FormatInt(lie, 10))
		w.Header().Set("Content-Length", strconv.FormatInt(lie, 10))
		return
	}
	if s.isLFS(b) {
		// The Hub answers with a redirect whose own ETag and length describe
		// the redirect; the file's are in the X-Linked-* headers.
		w.Header().Set("X-Linked-Etag", `"`+s.sha256(b)+`"`)
		w.Header().Set("X-Linked-Size", strconv.Itoa(len(b)))
		w.Header().Set("ETag", `W/"`+GitBlobSHA1(s.pointer(b))[:20]+`"`)
		loc := fmt.Sprintf("%s/repos/%s/%s?X-Amz-Signature=fake", s.CDN.URL, url.PathEscape(name), s.sha256(b))
		w.Header().Set("Location", loc)
		w.WriteHeader(http.StatusFound)
		return
	}
	w.Header().Set("ETag", `"`+GitBlobSHA1(b)+`"`)
	s.serveBytes(w, r, name+"/"+file, b)
}

func (s *Server) serveCDN(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.cdnHits++
	if a := r.Header.Get("Authorization"); a != "" {
		s.cdnAuth = append(s.cdnAuth, a)
	}
	s.mu.Unlock()
	p := segments(r)
	if len(p) != 3 || p[0] != "repos" {
		http.NotFound(w, r)
		return
	}
	name, oid := p[1], p[2]
	s.mu.Lock()
	var found []byte
	var file string
	if repo := s.repos[name]; repo != nil {
		for _, files := range repo.Commits {
			for f, b := range files {
				if s.isLFS(b) && s.sums[sliceID(b)] == oid {
					found, file = b, f
				}
			}
		}
	}
	s.mu.Unlock()
	if found == nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("ETag", `"`+oid+`"`)
	s.serveBytes(w, r, name+"/"+file, found)
}

// serveBytes serves b with Range support, after the file's fault.
func (s *Server) serveBytes(w http.ResponseWriter, r *http.Request, key string, b []byte) {
	w.Header().Set("Accept-Ranges", "bytes")
	w.Header().Set("Content-Type", "application/octet-stream")
	if r.Method == http.MethodHead {
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		return
	}
	w = &countingWriter{ResponseWriter: w, s: s}
	s.mu.Lock()
	fault := s.faults[key]
	s.gets[key]++
	n := s.gets[key]
	s.mu.Unlock()
	probe := r.Header.Get("Range") == "bytes=0-0" // a client asking for the size
	switch {
	case fault == Corrupt:
		bad := append([]byte(nil), b...)
		bad[len(bad)/2] ^= 0xff
		b = bad
	case !probe && (fault == Truncate || (fault == DropOnce || fault == IgnoreRange) && n == 1):
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(http.StatusOK)
		w.Write(b[:len(b)/2])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // drop the connection mid-body
	case fault == IgnoreRange:
		r.Header.Del("Range")
	case fault == Trickle && !probe:
		gap := s.getHostile().TrickleGap
		if gap <= 0 {
			gap = 5 * time.Second
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(http.StatusOK)
		for i := range b {
			if _, err := w.Write(b[i : i+1]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(gap):
			}
		}
		return
	}
	http.ServeContent(w, r, path.Base(key), time.Time{}, bytes.NewReader(b))
}

// countingWriter adds the body bytes it passes on to the server's count.
type countingWriter struct {
	http.ResponseWriter
	s *Server
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.s.mu.Lock()
	c.s.served += int64(n)
	c.s.mu.Unlock()
	return n, err
}

func (c *countingWriter) Flush() { c.ResponseWriter.(http.Flusher).Flush() }

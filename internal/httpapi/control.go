package httpapi

import (
	"context"
	"crypto/subtle"
	"fmt"
	"io/fs"
	"mime"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/adapterd/adapterd/internal/spec"
)

// Policy says what one listener lets through. The control socket and the
// TCP listener (listen:) each have one; Guard enforces it in front of
// Handler, so the endpoints themselves know nothing of callers.
type Policy struct {
	// Socket: requests come over the control socket, whose peer was
	// identified with SO_PEERCRED; Admins decides who may use it.
	Socket bool
	Admins *Admins
	// MetricsOnly serves only /metrics, /healthz and /readyz (api.listen_serves: metrics).
	MetricsOnly bool
	// Token is the bearer token a TCP request must carry to mutate; ""
	// refuses mutating requests on TCP.
	Token string
	// Hosts are the Host names accepted besides loopback addresses
	// (listen:'s host and api.hosts).
	Hosts []string
	// SocketPath names the socket in refusals, so they say where to go.
	SocketPath string
}

// metricsOnlyPaths are what a listener with MetricsOnly serves: what
// Prometheus and a load balancer need, and nothing about the adapters.
var metricsOnlyPaths = []string{"/metrics", "/healthz", "/readyz"}

// Guard refuses what p does not allow, then hands the request to h.
// A mutating request (any method but GET and HEAD) needs an authenticated
// caller (the socket's peer, or the bearer token on TCP), a JSON body, no
// foreign Origin (a web page's cross-origin POST) and a Host that is this
// host (DNS rebinding: a page whose name resolves to 127.0.0.1 still
// sends its own name).
func Guard(h http.Handler, p Policy) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.Socket {
			peer, ok := r.Context().Value(peerKey{}).(*peerCred)
			if !ok {
				text(w, http.StatusForbidden, "the caller could not be identified (SO_PEERCRED)")
				return
			}
			if err := p.Admins.allow(peer); err != nil {
				text(w, http.StatusForbidden, err.Error())
				return
			}
		}
		if p.MetricsOnly && !slices.Contains(metricsOnlyPaths, r.URL.Path) {
			text(w, http.StatusNotFound, "not served on this address (api.listen_serves: metrics); use adapterd status on this host, which reads the control socket")
			return
		}
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			h.ServeHTTP(w, r)
			return
		}
		if code, msg := p.checkMutating(r); code != 0 {
			text(w, code, msg)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// checkMutating returns the refusal of a mutating request, or 0.
func (p Policy) checkMutating(r *http.Request) (int, string) {
	if !p.Socket {
		if p.Token == "" {
			return http.StatusForbidden, fmt.Sprintf("%s %s is served on the control socket only (api.socket %s): run the adapterd command (confirm-removals, rollback, unpin) on this host as root, the adapterd user or a member of api.admin_group; or set api.token_file for TCP", r.Method, r.URL.Path, p.SocketPath)
		}
		auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(auth), []byte(p.Token)) != 1 {
			return http.StatusUnauthorized, "a mutating request on listen: needs Authorization: Bearer with the token in api.token_file"
		}
	}
	if !p.hostAllowed(r.Host) {
		return http.StatusForbidden, fmt.Sprintf("Host %q is not this host: send loopback, the listen: host or a name in api.hosts", r.Host)
	}
	if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host {
		return http.StatusForbidden, fmt.Sprintf("cross-origin request from %q refused", o)
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return http.StatusUnsupportedMediaType, "a mutating request must be Content-Type: application/json"
	}
	return 0, ""
}

func (p Policy) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	if host == "" {
		return false
	}
	if spec.IsLoopbackHost(host) {
		return true
	}
	return slices.ContainsFunc(p.Hosts, func(h string) bool { return strings.EqualFold(h, host) })
}

// PolicyFor is the policy of the TCP listener for cfg, with token the
// contents of api.token_file ("" without one).
func PolicyFor(cfg *spec.Config, token string) Policy {
	p := Policy{MetricsOnly: cfg.API.ListenServes == spec.ListenServesMetrics, Token: token, SocketPath: cfg.ControlSocket()}
	if h, _, err := net.SplitHostPort(cfg.Listen); err == nil && h != "" && h != "0.0.0.0" && h != "::" {
		p.Hosts = append(p.Hosts, h)
	}
	p.Hosts = append(p.Hosts, cfg.API.Hosts...)
	return p
}

// ReadToken reads api.token_file. The file must be a regular file that
// only its owner can read, as a password file is: a token others can read
// authenticates nobody.
func ReadToken(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("api.token_file: %v; create it with mode 0600 or remove the key", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("api.token_file %s has mode %v: others can read it; chmod 600 it", path, fi.Mode())
	}
	b := make([]byte, 4096)
	n, _ := f.Read(b)
	tok := strings.TrimSpace(string(b[:n]))
	if tok == "" || strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("api.token_file %s must hold one token on one line", path)
	}
	return tok, nil
}

// Admins is who may use the control socket: root, the daemon's own user,
// and the members of one group.
type Admins struct {
	uid   int
	group string
	gid   int // -1 without a group
}

// NewAdmins resolves api.admin_group ("" for none).
func NewAdmins(group string) (*Admins, error) {
	a := &Admins{uid: os.Geteuid(), group: group, gid: -1}
	if group == "" {
		return a, nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return nil, fmt.Errorf("api.admin_group %q: %v; create the group or fix the name", group, err)
	}
	if a.gid, err = strconv.Atoi(g.Gid); err != nil {
		return nil, fmt.Errorf("api.admin_group %q: gid %q", group, g.Gid)
	}
	return a, nil
}

func (a *Admins) allow(p *peerCred) error {
	if p.uid == 0 || p.uid == a.uid {
		return nil
	}
	if a.gid >= 0 {
		if p.gid == a.gid {
			return nil
		}
		// SO_PEERCRED carries the primary group only; supplementary
		// groups come from the group database, as for a login.
		if u, err := user.LookupId(strconv.Itoa(p.uid)); err == nil {
			if gids, err := u.GroupIds(); err == nil && slices.Contains(gids, strconv.Itoa(a.gid)) {
				return nil
			}
		}
	}
	who := "root or the daemon's user"
	if a.group != "" {
		who += " or a member of group " + a.group + " (api.admin_group)"
	}
	return fmt.Errorf("uid %d may not use the control socket: only %s", p.uid, who)
}

// peerCred is the identity of the process at the other end of a socket
// connection, as the kernel recorded it at connect time.
type peerCred struct{ uid, gid int }

type peerKey struct{}

// peerConn is a control-socket connection with its peer's identity.
type peerConn struct {
	net.Conn
	peer *peerCred
}

// controlListener identifies each connection's peer as it is accepted.
type controlListener struct {
	net.Listener
	path string
}

func (l *controlListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return c, nil
	}
	peer, err := readPeerCred(uc)
	if err != nil {
		// An unidentified caller gets a connection that Guard refuses,
		// rather than an Accept error that would stop the server.
		return c, nil
	}
	return &peerConn{Conn: c, peer: peer}, nil
}

// Close also removes the socket file, so the next start finds none.
func (l *controlListener) Close() error {
	err := l.Listener.Close()
	os.Remove(l.path)
	return err
}

// connContext carries a control connection's peer into its requests.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if pc, ok := c.(*peerConn); ok {
		return context.WithValue(ctx, peerKey{}, pc.peer)
	}
	return ctx
}

// ListenControl opens the control socket at path. A socket file left by
// a daemon that is gone is replaced; one a running daemon answers on, or
// anything that is not a socket, is not.
func ListenControl(path string) (net.Listener, error) {
	if len(path) > 107 {
		return nil, fmt.Errorf("api.socket %s is %d bytes, more than a unix socket path can hold (107); set api.socket to a shorter path such as /run/adapterd/adapterd.sock", path, len(path))
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("api.socket %s exists and is not a socket; remove it or set api.socket to another path", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("api.socket %s: another adapterd is serving it; stop it or set api.socket to another path", path)
		}
		os.Remove(path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("api.socket %s: cannot create its folder: %v", path, err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("cannot open the control socket: %v (config api.socket %s)", err, path)
	}
	// Everyone may connect: SO_PEERCRED, not the file mode, decides who
	// is served, so a refusal can say why.
	if err := os.Chmod(path, 0o666); err != nil {
		ln.Close()
		return nil, err
	}
	return &controlListener{Listener: ln, path: path}, nil
}

package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/adapterd/adapterd/internal/mirror"
	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/status"
)

// fetchTimeout keeps `adapterd status` from hanging on a wedged daemon
// when the caller's context has no deadline of its own.
const fetchTimeout = 10 * time.Second

// FetchAdapters reads the adapter list from the daemon whose config says
// listen: listen. Errors are one line that says what to check.
func FetchAdapters(ctx context.Context, listen string) ([]status.Status, error) {
	return fetchList[status.Status](ctx, tcpTarget(listen), AdaptersPath, "adapter list")
}

// FetchSources reads the status of the daemon's sources (sources: in its
// config) from the daemon whose config says listen: listen.
func FetchSources(ctx context.Context, listen string) ([]mirror.SourceStatus, error) {
	return fetchList[mirror.SourceStatus](ctx, tcpTarget(listen), SourcesPath, "source list")
}

// Daemon is how a command reaches the running daemon: its control socket
// (api.socket) first, and for reading only, its listen: address when the
// socket is not there or does not serve this user.
type Daemon struct{ Socket, Listen string }

// Adapters reads the adapter list.
func (d Daemon) Adapters(ctx context.Context) ([]status.Status, error) {
	return readList[status.Status](ctx, d, AdaptersPath, "adapter list")
}

// Sources reads the sources' status.
func (d Daemon) Sources(ctx context.Context) ([]mirror.SourceStatus, error) {
	return readList[mirror.SourceStatus](ctx, d, SourcesPath, "source list")
}

// readList reads over the socket, and over listen: when the socket cannot
// be used: a user outside api.admin_group still sees what listen: shows.
func readList[T any](ctx context.Context, d Daemon, path, what string) ([]T, error) {
	list, err := fetchList[T](ctx, socketTarget(d.Socket), path, what)
	var re *refusedError
	if err != nil && d.Listen != "" && (errors.As(err, &re) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.ECONNREFUSED)) {
		return fetchList[T](ctx, tcpTarget(d.Listen), path, what)
	}
	return list, err
}

// fetchList GETs one of the daemon's JSON lists; what names it in errors.
// An empty answer is an empty list, never nil.
func fetchList[T any](ctx context.Context, t target, path, what string) ([]T, error) {
	var list []T
	err := call(ctx, t, http.MethodGet, path, func(where string, body io.Reader) error {
		if err := json.NewDecoder(body).Decode(&list); err != nil {
			return fmt.Errorf("adapterd at %s sent an unreadable %s: %s; is something other than adapterd listening there?", where, what, spec.OneLine(err.Error()))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if list == nil {
		list = []T{}
	}
	return list, nil
}

// ConfirmRemovals tells the daemon that its held removals are intended,
// over the control socket only, and returns its answer.
func (d Daemon) ConfirmRemovals(ctx context.Context) (string, error) {
	return d.post(ctx, ConfirmRemovalsPath)
}

// post sends one mutating request over the control socket and returns the
// daemon's one-line answer.
func (d Daemon) post(ctx context.Context, path string) (string, error) {
	var answer string
	err := call(ctx, socketTarget(d.Socket), http.MethodPost, path, func(_ string, body io.Reader) error {
		b, err := io.ReadAll(io.LimitReader(body, 4096))
		answer = strings.TrimSpace(string(b))
		return err
	})
	return answer, err
}

// target is one way to the daemon.
type target struct {
	client *http.Client
	host   string // in the URL and the Host header
	shown  string // where, in messages
	where  string // the config key that set it, in messages
	err    error  // the config makes this way unusable
}

func tcpTarget(listen string) target {
	if listen == "" {
		return target{err: errors.New(`the config sets listen: "", so the daemon serves no status; set listen (for example 127.0.0.1:9464) and restart it`)}
	}
	addr, err := dialAddr(listen)
	if err != nil {
		return target{err: fmt.Errorf("config listen %q is not host:port: %v", listen, err)}
	}
	return target{client: http.DefaultClient, host: addr, shown: addr, where: "(config listen: " + listen + ")"}
}

func socketTarget(path string) target {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return target{client: &http.Client{Transport: tr}, host: "localhost", shown: path, where: "(config api.socket: " + path + ")"}
}

// refusedError is the daemon refusing this caller (403).
type refusedError struct{ msg string }

func (e *refusedError) Error() string { return e.msg }

// call sends one request to the daemon and hands a 200 answer to read.
func call(ctx context.Context, t target, method, path string, read func(where string, body io.Reader) error) error {
	if t.err != nil {
		return t.err
	}
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	u := url.URL{Scheme: "http", Host: t.host, Path: path}
	var body io.Reader
	if method != http.MethodGet {
		body = strings.NewReader("{}")
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return fmt.Errorf("cannot build request for %s: %v %s", t.shown, err, t.where)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := t.client.Do(req)
	if err != nil {
		// The url.Error wrapper repeats the URL; the cause is what helps.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("cannot reach adapterd at %s: %w; is the daemon running? %s", t.shown, oneLineErr{err}, t.where)
	}
	defer resp.Body.Close()

	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 400))
		msg := fmt.Sprintf("adapterd at %s answered %s", t.shown, resp.Status)
		if b := spec.OneLine(strings.TrimSpace(string(b))); b != "" {
			msg += ": " + b
		}
		if resp.StatusCode == http.StatusForbidden {
			return &refusedError{msg + " " + t.where}
		}
		if resp.StatusCode == http.StatusConflict {
			// adapterd understood and refused (a rollback it cannot do):
			// its own words are the message, with no hint of a stranger.
			return errors.New(msg)
		}
		return fmt.Errorf("%s; is something other than adapterd listening there? %s", msg, t.where)
	}
	if err := read(t.shown, resp.Body); err != nil {
		return fmt.Errorf("%w %s", err, t.where)
	}
	return nil
}

// oneLineErr shows err on one line and keeps it for errors.Is.
type oneLineErr struct{ err error }

func (e oneLineErr) Error() string { return spec.OneLine(e.err.Error()) }
func (e oneLineErr) Unwrap() error { return e.err }

// dialAddr turns a listen address into one a client can connect to: a
// daemon listening on all interfaces is reached over loopback.
func dialAddr(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", err
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port), nil
}

package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
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
	return fetchList[status.Status](ctx, listen, AdaptersPath, "adapter list")
}

// FetchSources reads the status of the daemon's sources (sources: in its
// config) from the daemon whose config says listen: listen.
func FetchSources(ctx context.Context, listen string) ([]mirror.SourceStatus, error) {
	return fetchList[mirror.SourceStatus](ctx, listen, SourcesPath, "source list")
}

// fetchList GETs one of the daemon's JSON lists; what names it in errors.
// An empty answer is an empty list, never nil.
func fetchList[T any](ctx context.Context, listen, path, what string) ([]T, error) {
	var list []T
	err := call(ctx, listen, http.MethodGet, path, func(target string, body io.Reader) error {
		if err := json.NewDecoder(body).Decode(&list); err != nil {
			return fmt.Errorf("adapterd at %s sent an unreadable %s: %s; is something other than adapterd listening there?", target, what, spec.OneLine(err.Error()))
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

// ConfirmRemovals tells the daemon whose config says listen: listen that
// its held removals are intended, and returns its answer.
func ConfirmRemovals(ctx context.Context, listen string) (string, error) {
	var answer string
	err := call(ctx, listen, http.MethodPost, ConfirmRemovalsPath, func(_ string, body io.Reader) error {
		b, err := io.ReadAll(io.LimitReader(body, 4096))
		answer = strings.TrimSpace(string(b))
		return err
	})
	return answer, err
}

// call sends one request to the daemon and hands a 200 answer to read.
func call(ctx context.Context, listen, method, path string, read func(target string, body io.Reader) error) error {
	if listen == "" {
		return errors.New(`the config sets listen: "", so the daemon serves no status; set listen (for example 127.0.0.1:9464) and restart it`)
	}
	target, err := dialAddr(listen)
	if err != nil {
		return fmt.Errorf("config listen %q is not host:port: %v", listen, err)
	}
	where := fmt.Sprintf("(config listen: %s)", listen)

	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	u := url.URL{Scheme: "http", Host: target, Path: path}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
	if err != nil {
		return fmt.Errorf("cannot build request for %s: %v %s", target, err, where)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		// The url.Error wrapper repeats the URL; the cause is what helps.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("cannot reach adapterd at %s: %s; is the daemon running? %s", target, spec.OneLine(err.Error()), where)
	}
	defer resp.Body.Close()

	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		msg := fmt.Sprintf("adapterd at %s answered %s", target, resp.Status)
		if b := spec.OneLine(strings.TrimSpace(string(body))); b != "" {
			msg += ": " + b
		}
		return fmt.Errorf("%s; is something other than adapterd listening there? %s", msg, where)
	}
	if err := read(target, resp.Body); err != nil {
		return fmt.Errorf("%w %s", err, where)
	}
	return nil
}

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

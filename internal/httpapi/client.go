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

	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/status"
)

// fetchTimeout keeps `adapterd status` from hanging on a wedged daemon
// when the caller's context has no deadline of its own.
const fetchTimeout = 10 * time.Second

// FetchAdapters reads the adapter list from the daemon whose config says
// listen: listen. Errors are one line that says what to check.
func FetchAdapters(ctx context.Context, listen string) ([]status.Status, error) {
	if listen == "" {
		return nil, errors.New(`the config sets listen: "", so the daemon serves no status; set listen (for example 127.0.0.1:9464) and restart it`)
	}
	target, err := dialAddr(listen)
	if err != nil {
		return nil, fmt.Errorf("config listen %q is not host:port: %v", listen, err)
	}
	where := fmt.Sprintf("(config listen: %s)", listen)

	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	u := url.URL{Scheme: "http", Host: target, Path: AdaptersPath}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("cannot build request for %s: %v %s", target, err, where)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		// The url.Error wrapper repeats the URL; the cause is what helps.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("cannot reach adapterd at %s: %s; is the daemon running? %s", target, spec.OneLine(err.Error()), where)
	}
	defer resp.Body.Close()

	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		msg := fmt.Sprintf("adapterd at %s answered %s", target, resp.Status)
		if b := spec.OneLine(strings.TrimSpace(string(body))); b != "" {
			msg += ": " + b
		}
		return nil, fmt.Errorf("%s; is something other than adapterd listening there? %s", msg, where)
	}
	var list []status.Status
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return nil, fmt.Errorf("adapterd at %s sent an unreadable adapter list: %s; is something other than adapterd listening there? %s", target, spec.OneLine(err.Error()), where)
	}
	if list == nil {
		list = []status.Status{}
	}
	return list, nil
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

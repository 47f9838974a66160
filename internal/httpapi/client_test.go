package httpapi

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestFetchAdapters(t *testing.T) {
	srv := httptest.NewServer(Handler(&fakeSource{list: sample()}, nil))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	for _, listen := range []string{srv.Listener.Addr().String(), ":" + port, "0.0.0.0:" + port} {
		t.Run(listen, func(t *testing.T) {
			got, err := FetchAdapters(context.Background(), listen)
			if err != nil {
				t.Fatal(err)
			}
			if !equalStatuses(got, sample()) {
				t.Errorf("got %+v\nwant %+v", got, sample())
			}
		})
	}
}

func TestFetchAdapters_EmptyIsNotNil(t *testing.T) {
	srv := httptest.NewServer(Handler(&fakeSource{}, nil))
	defer srv.Close()
	got, err := FetchAdapters(context.Background(), srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if got == nil || len(got) != 0 {
		t.Errorf("got %#v, want empty non-nil slice", got)
	}
}

func TestFetchAdapters_Errors(t *testing.T) {
	// A port nothing listens on: take one, then free it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	notAdapterd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "<html>\n<body>nope</body>\n</html>", http.StatusNotFound)
	}))
	defer notAdapterd.Close()
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("{not json"))
	}))
	defer garbage.Close()

	tests := []struct {
		name   string
		listen string
		want   []string
	}{
		{"daemon not running", closed, []string{"cannot reach adapterd at " + closed + ": ", "is the daemon running?", "(config listen: " + closed + ")", "connection refused"}},
		{"listen off", "", []string{`listen: ""`}},
		{"listen malformed", "localhost", []string{`config listen "localhost"`}},
		{"something else answers", notAdapterd.Listener.Addr().String(), []string{"answered 404 Not Found: <html> <body>nope</body> </html>", "(config listen: "}},
		{"not json", garbage.Listener.Addr().String(), []string{"unreadable adapter list", "(config listen: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := FetchAdapters(context.Background(), tt.listen)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if strings.ContainsAny(msg, "\r\n") {
				t.Errorf("error is not one line: %q", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

func TestFetchAdapters_ContextCancelled(t *testing.T) {
	srv := httptest.NewServer(Handler(&fakeSource{list: sample()}, nil))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := FetchAdapters(ctx, srv.Listener.Addr().String()); err == nil {
		t.Error("FetchAdapters with a cancelled context succeeded")
	}
}

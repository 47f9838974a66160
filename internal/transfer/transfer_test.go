package transfer

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// trickle is a faultInjectingServer: it answers at once, then sends one
// byte every gap, which no deadline on the headers alone catches.
func trickle(gap time.Duration, n int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		for range n {
			w.Write([]byte("x"))
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(gap):
			}
		}
	})
}

func TestTransport(t *testing.T) {
	silent := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	tests := []struct {
		name     string
		h        http.Handler
		wantIdle bool
	}{
		{"headers never come", silent, true},
		{"body trickles slower than the idle timeout", trickle(time.Second, 1000), true},
		{"body trickles faster than the idle timeout", trickle(10*time.Millisecond, 30), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.h)
			defer srv.Close()
			c := &http.Client{Transport: Transport(nil, 200*time.Millisecond, "test.idle")}
			resp, err := c.Get(srv.URL)
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			var ie *IdleError
			if got := errors.As(err, &ie); got != tt.wantIdle {
				t.Fatalf("error %v: IdleError %v, want %v", err, got, tt.wantIdle)
			}
			if tt.wantIdle && ie.Setting != "test.idle" {
				t.Errorf("IdleError names %q", ie.Setting)
			}
		})
	}
}

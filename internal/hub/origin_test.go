package hub

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestTokenGoesOnlyToTheSameOrigin: Authorization is attached for the
// endpoint's scheme, host and port only, and a request from an https hub
// to http on its own host is refused outright.
func TestTokenGoesOnlyToTheSameOrigin(t *testing.T) {
	tests := []struct {
		endpoint, target string
		auth             bool
		refused          bool
	}{
		{"https://hub.example", "https://hub.example/api/x", true, false},
		{"https://hub.example", "https://hub.example:443/api/x", true, false},
		{"https://hub.example", "https://HUB.example/api/x", true, false},
		{"https://hub.example", "https://hub.example:8443/api/x", false, false},
		{"https://hub.example", "https://cdn.example/x", false, false},
		{"https://hub.example", "http://hub.example/api/x", false, true},
		{"https://hub.example", "http://cdn.example/x", false, false},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8081/x", false, false},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080/x", true, false},
	}
	for _, tt := range tests {
		c := New(tt.endpoint, "hf_secret", "HF_TOKEN")
		req, err := c.newRequest(t.Context(), http.MethodGet, tt.target)
		if tt.refused {
			if err == nil || !strings.Contains(err.Error(), "https to http") {
				t.Errorf("%s -> %s: err %v, want a refusal", tt.endpoint, tt.target, err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if got := req.Header.Get("Authorization") != ""; got != tt.auth {
			t.Errorf("%s -> %s: Authorization sent %v, want %v", tt.endpoint, tt.target, got, tt.auth)
		}
	}
}

func TestRedirectKeepsTheTokenOnItsOrigin(t *testing.T) {
	mk := func(u string, auth bool) *http.Request {
		r := &http.Request{URL: must(url.Parse(u)), Header: http.Header{}}
		if auth {
			r.Header.Set("Authorization", "Bearer hf_secret")
		}
		return r
	}
	tests := []struct {
		from, to  string
		keepsAuth bool
		refused   bool
	}{
		{"https://hub.example/a", "https://hub.example/b", true, false},
		{"https://hub.example/a", "https://hub.example:444/b", false, false},
		{"https://hub.example/a", "https://cdn.example/b", false, false},
		{"https://hub.example/a", "http://hub.example/b", false, true},
		{"https://hub.example/a", "http://cdn.example/b", false, true},
	}
	for _, tt := range tests {
		first, next := mk(tt.from, true), mk(tt.to, true)
		err := guardRedirect(next, []*http.Request{first})
		if tt.refused != (err != nil) {
			t.Errorf("%s -> %s: err %v, refused want %v", tt.from, tt.to, err, tt.refused)
			continue
		}
		if err == nil && (next.Header.Get("Authorization") != "") != tt.keepsAuth {
			t.Errorf("%s -> %s: Authorization kept %v, want %v", tt.from, tt.to, !tt.keepsAuth, tt.keepsAuth)
		}
	}
}

func TestEndpointWithAPasswordIsRefused(t *testing.T) {
	for _, ep := range []string{"https://user:s3cret@hub.example", "https://s3cret@hub.example", "https://user:s3cret@hub.example:bad"} {
		_, err := NewFromEnv(func(k string) string {
			if k == "HF_ENDPOINT" {
				return ep
			}
			return ""
		})
		if err == nil {
			t.Errorf("%s accepted", ep)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: the error shows the secret: %v", ep, err)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

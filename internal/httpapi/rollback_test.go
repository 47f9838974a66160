package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/adapterd/adapterd/internal/status"
)

// rollbackSource records what it was asked and answers with err.
type rollbackSource struct {
	*fakeSource
	err      error
	key, to  string
	unpinned string
}

func (r *rollbackSource) Rollback(_ context.Context, key, to string) (string, error) {
	r.key, r.to = key, to
	return "rolled back " + key, r.err
}

func (r *rollbackSource) Unpin(_ context.Context, key string) (string, error) {
	r.unpinned = key
	return "unpinned " + key, r.err
}

func TestRollbackEndpoints(t *testing.T) {
	for _, tc := range []struct {
		name, method, path string
		err                error
		code               int
		key, to, body      string
	}{
		{"previous version", "POST", "/v1/adapters/bot/rollback", nil, 200, "bot", "", "rolled back bot"},
		{"named version with a namespace and tag", "POST", "/v1/adapters/bot/rollback/team/bot:v-0123456789ab", nil, 200, "bot", "team/bot:v-0123456789ab", ""},
		{"unknown key", "POST", "/v1/adapters/nosuch/rollback", fmt.Errorf("%w: no model", status.ErrNotFound), 404, "nosuch", "", "not found: no model"},
		{"refused", "POST", "/v1/adapters/bot/rollback", errors.New("changed outside adapterd"), 409, "bot", "", "changed outside adapterd"},
		{"GET does not roll back", "GET", "/v1/adapters/bot/rollback", nil, 405, "", "", ""},
		{"unpin", "POST", "/v1/adapters/bot/unpin", nil, 200, "", "", "unpinned bot"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &rollbackSource{fakeSource: &fakeSource{}, err: tc.err}
			rec := httptest.NewRecorder()
			Handler(src, nil).ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			body, _ := io.ReadAll(rec.Body)
			if rec.Code != tc.code || !strings.Contains(string(body), tc.body) {
				t.Errorf("%d %q, want %d with %q", rec.Code, body, tc.code, tc.body)
			}
			if src.key != tc.key || src.to != tc.to {
				t.Errorf("asked key %q to %q, want %q %q", src.key, src.to, tc.key, tc.to)
			}
		})
	}
	rec := httptest.NewRecorder()
	Handler(&fakeSource{}, nil).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/adapters/bot/rollback", nil))
	if rec.Code != 404 {
		t.Errorf("a source that cannot roll back: %d, want 404", rec.Code)
	}
}

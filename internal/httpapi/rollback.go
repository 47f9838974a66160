package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/status"
)

// Rollbacker is a Source that can put a kept version of a key's model back
// under its name and pin it there (adapterd rollback), and unpin it
// (adapterd unpin). An error wrapping status.ErrNotFound is answered 404, any
// other 409: the request was understood and refused.
type Rollbacker interface {
	Rollback(ctx context.Context, key, to string) (string, error)
	Unpin(ctx context.Context, key string) (string, error)
}

// Where `adapterd rollback` and `adapterd unpin` post. The key (and the
// version) are path segments, so the requests carry no body, like
// ConfirmRemovalsPath's.
const (
	RollbackPath   = "/v1/adapters/{key}/rollback"
	RollbackToPath = "/v1/adapters/{key}/rollback/{to...}"
	UnpinPath      = "/v1/adapters/{key}/unpin"
)

// rollbackRoutes registers the rollback and unpin endpoints, POST only, as
// ConfirmRemovalsPath is: they change which model a name serves.
func rollbackRoutes(mux *http.ServeMux, src Source) {
	rollback := func(w http.ResponseWriter, r *http.Request) {
		rb, ok := src.(Rollbacker)
		if !ok {
			text(w, http.StatusNotFound, "this daemon cannot roll back")
			return
		}
		answer(w)(rb.Rollback(r.Context(), r.PathValue("key"), r.PathValue("to")))
	}
	mux.HandleFunc("POST "+RollbackPath, rollback)
	mux.HandleFunc("POST "+RollbackToPath, rollback)
	mux.HandleFunc("POST "+UnpinPath, func(w http.ResponseWriter, r *http.Request) {
		rb, ok := src.(Rollbacker)
		if !ok {
			text(w, http.StatusNotFound, "this daemon cannot unpin")
			return
		}
		answer(w)(rb.Unpin(r.Context(), r.PathValue("key")))
	})
}

func answer(w http.ResponseWriter) func(string, error) {
	return func(msg string, err error) {
		switch {
		case errors.Is(err, status.ErrNotFound):
			text(w, http.StatusNotFound, spec.OneLine(err.Error()))
		case err != nil:
			text(w, http.StatusConflict, spec.OneLine(err.Error()))
		default:
			text(w, http.StatusOK, spec.OneLine(msg))
		}
	}
}

// Rollback asks the daemon, over the control socket only, to put a kept
// version of key's model back under its name: to, or the previous one when
// to is "". It returns the daemon's one-line answer. Like ConfirmRemovals,
// it changes what a name serves, so the kernel says who asks.
func (d Daemon) Rollback(ctx context.Context, key, to string) (string, error) {
	path := "/v1/adapters/" + url.PathEscape(key) + "/rollback"
	if to != "" {
		path += "/" + url.PathEscape(to)
	}
	return d.post(ctx, path)
}

// Unpin asks the daemon, over the control socket only, to let key's folder
// make its model again.
func (d Daemon) Unpin(ctx context.Context, key string) (string, error) {
	return d.post(ctx, "/v1/adapters/"+url.PathEscape(key)+"/unpin")
}

// WriteVersionsTable writes a key's kept versions, newest first, with the
// columns VERSION CURRENT AGE INPUT. INPUT is the input digest it was made
// from, shortened.
func WriteVersionsTable(w io.Writer, vs []status.Version, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tCURRENT\tAGE\tINPUT")
	for i := len(vs) - 1; i >= 0; i-- {
		v := vs[i]
		cur := "-"
		if v.Current {
			cur = "*"
		}
		d := strings.TrimPrefix(v.Digest, "sha256:")
		if len(d) > 12 {
			d = d[:12]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", cell(v.Model), cur, age(v.Created, now), cell(d))
	}
	return tw.Flush()
}

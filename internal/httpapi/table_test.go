package httpapi

import (
	"strings"
	"testing"
	"time"

	"github.com/adapterd/adapterd/internal/mirror"
	"github.com/adapterd/adapterd/internal/status"
)

func TestWriteTable(t *testing.T) {
	list := []status.Status{
		{Key: "alpha", State: status.Ready, Model: "alpha:latest", Strategy: "native", Updated: t0.Add(-5 * time.Second)},
		{Key: "beta", State: status.Invalid, Model: "beta:latest", Error: "adapter.yaml line 3: unknown key \"sytem\"", Updated: t0.Add(-3 * time.Hour)},
		{Key: "evil\x1b[2J\tkey", State: status.Waiting, Error: "two\nlines"},
		{Key: "gamma", State: status.Ingesting, Model: "gamma:latest", Strategy: "merge", Updated: t0.Add(-time.Minute),
			Progress: &status.Progress{Step: "merge", BytesDone: 120e6, BytesTotal: 290e6, Started: t0.Add(-10 * time.Second)}},
		{Key: "delta", State: status.Ingesting, Model: "delta:latest", Strategy: "native", Updated: t0.Add(-2 * time.Second),
			Progress: &status.Progress{Step: "upload", BytesDone: 1_500_000, BytesTotal: 4_000_000}},
		{Key: "eps", State: status.Ingesting, Model: "eps:latest", Strategy: "native", Updated: t0,
			Progress: &status.Progress{Step: "create"}},
	}
	var b strings.Builder
	if err := WriteTable(&b, list, t0); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"KEY           MODEL         STATE                               STRATEGY  AGE  ERROR\n" +
		"alpha         alpha:latest  ready                               native    5s   -\n" +
		"beta          beta:latest   invalid                             -         3h   adapter.yaml line 3: unknown key \"sytem\"\n" +
		"evil?[2J key  -             waiting                             -         -    two lines\n" +
		"gamma         gamma:latest  ingesting merge 41% 120 MB/290 MB   merge     1m   -\n" +
		"delta         delta:latest  ingesting upload 37% 1.5 MB/4.0 MB  native    2s   -\n" +
		"eps           eps:latest    ingesting create                    native    0s   -\n"
	if got := b.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}

func TestWriteTable_Empty(t *testing.T) {
	var b strings.Builder
	if err := WriteTable(&b, nil, t0); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "KEY  MODEL  STATE  STRATEGY  AGE  ERROR\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestAge(t *testing.T) {
	tests := []struct {
		ago  time.Duration
		want string
	}{
		{0, "0s"},
		{5 * time.Second, "5s"},
		{59*time.Second + 999*time.Millisecond, "59s"},
		{time.Minute, "1m"},
		{3*time.Minute + 59*time.Second, "3m"},
		{59 * time.Minute, "59m"},
		{time.Hour, "1h"},
		{23*time.Hour + 59*time.Minute, "23h"},
		{24 * time.Hour, "1d"},
		{100 * 24 * time.Hour, "100d"},
		{-time.Minute, "0s"}, // the daemon's clock is ahead
	}
	for _, tt := range tests {
		if got := age(t0.Add(-tt.ago), t0); got != tt.want {
			t.Errorf("age(%v ago) = %q, want %q", tt.ago, got, tt.want)
		}
	}
	if got := age(time.Time{}, t0); got != "-" {
		t.Errorf("age(zero) = %q, want -", got)
	}
}

func TestWriteSourcesTable(t *testing.T) {
	list := []mirror.SourceStatus{
		{Source: "hf://org/support-bot@main", Kind: "hub", Commit: "0123456789abcdef0123456789abcdef01234567", LastCheck: t0.Add(-4 * time.Minute), Folders: 1},
		{Source: "s3://models/adapters/", Kind: "s3", LastCheck: t0.Add(-20 * time.Second), Folders: 7, Error: "listing s3://models/adapters/: connection refused\nretrying"},
		{Source: "hf://org/new@v2", Kind: "hub"},
	}
	var b strings.Builder
	if err := WriteSourcesTable(&b, list, t0); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"SOURCE                     KIND  COMMIT        CHECKED  FOLDERS  ERROR\n" +
		"hf://org/support-bot@main  hub   0123456789ab  4m       1        -\n" +
		"s3://models/adapters/      s3    -             20s      7        listing s3://models/adapters/: connection refused retrying\n" +
		"hf://org/new@v2            hub   -             -        0        -\n"
	if got := b.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}

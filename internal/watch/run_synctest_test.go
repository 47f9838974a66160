package watch

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// These tests drive Run on fake time. fsnotify's goroutines sit in system
// calls, which a synctest bubble cannot wait for, so Run polls here
// (forcePoll); the fsnotify paths are tested on real time in watch_test.go.

// runInBubble starts Run in polling mode inside the current bubble and
// returns its output channel and a stop function that waits for Run to return.
func runInBubble(t *testing.T, opts Options) (<-chan Event, func()) {
	t.Helper()
	w := New(opts)
	w.forcePoll = true
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan Event)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, out) }()
	return out, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

// received returns what Run has ready to send right now.
func received(out <-chan Event) []string {
	synctest.Wait()
	var got []Event
	for {
		select {
		case ev := <-out:
			got = append(got, ev)
			synctest.Wait()
		default:
			return keys(got)
		}
	}
}

func TestPeriodicResync(t *testing.T) {
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		out, stop := runInBubble(t, Options{Dir: dir, Settle: 5 * time.Second, Resync: time.Minute, PollInterval: 10 * time.Second})
		defer stop()

		if got := received(out); !slices.Equal(got, []string{"<resync>"}) {
			t.Fatalf("start: got %v, want the initial resync", got)
		}
		for i := range 3 {
			time.Sleep(time.Minute - time.Millisecond)
			if got := received(out); len(got) != 0 {
				t.Fatalf("period %d: got %v before the resync period", i, got)
			}
			time.Sleep(time.Millisecond)
			if got := received(out); !slices.Equal(got, []string{"<resync>"}) {
				t.Fatalf("period %d: got %v, want one resync", i, got)
			}
		}
	})
}

func TestSlowConsumerGetsCoalescedEvents(t *testing.T) {
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		out, stop := runInBubble(t, Options{Dir: dir, Settle: 5 * time.Second, Resync: time.Minute, PollInterval: time.Second})
		defer stop()

		// Nobody reads for ten resync periods while a folder keeps changing
		// and then settles.
		f := filepath.Join(dir, "foo", "adapter.yaml")
		if err := os.Mkdir(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range 20 {
			if err := os.WriteFile(f, []byte(strings.Repeat("x", i+1)), 0o644); err != nil {
				t.Fatal(err)
			}
			time.Sleep(2 * time.Second)
		}
		time.Sleep(10 * time.Minute)

		got := received(out)
		slices.Sort(got)
		if want := []string{"<resync>", "foo"}; !slices.Equal(got, want) {
			t.Fatalf("got %v, want %v (each once)", got, want)
		}
	})
}

func TestRunSettleRestartsOnEachChange(t *testing.T) {
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		out, stop := runInBubble(t, Options{Dir: dir, Settle: 5 * time.Second, PollInterval: time.Second})
		defer stop()
		if got := received(out); !slices.Equal(got, []string{"<resync>"}) {
			t.Fatalf("start: got %v, want the initial resync", got)
		}

		f := filepath.Join(dir, "foo", "adapter.yaml")
		if err := os.Mkdir(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		// Changes at 0.5s, 2.5s and 4.5s are seen by the polls at 1s, 3s and
		// 5s; each restarts the settle time, so foo is due at 10s.
		time.Sleep(500 * time.Millisecond)
		for i := range 3 {
			if err := os.WriteFile(f, []byte(strings.Repeat("x", i+1)), 0o644); err != nil {
				t.Fatal(err)
			}
			if i < 2 {
				time.Sleep(2 * time.Second)
			}
		}
		time.Sleep(5400 * time.Millisecond) // t=9.9s
		if got := received(out); len(got) != 0 {
			t.Fatalf("t=9.9s: got %v before 5s of quiet", got)
		}
		time.Sleep(200 * time.Millisecond) // t=10.1s
		if got := received(out); !slices.Equal(got, []string{"foo"}) {
			t.Fatalf("t=10.1s: got %v, want [foo]", got)
		}
		time.Sleep(time.Minute)
		if got := received(out); len(got) != 0 {
			t.Fatalf("later: got %v, want nothing", got)
		}
	})
}

func TestRunSettleZeroEmitsAtOnce(t *testing.T) {
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		out, stop := runInBubble(t, Options{Dir: dir, Settle: 0, PollInterval: time.Second})
		defer stop()
		if got := received(out); !slices.Equal(got, []string{"<resync>"}) {
			t.Fatalf("start: got %v, want the initial resync", got)
		}
		if err := os.Mkdir(filepath.Join(dir, "foo"), 0o755); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second) // the next poll
		if got := received(out); !slices.Equal(got, []string{"foo"}) {
			t.Fatalf("got %v, want [foo] at the first poll", got)
		}
	})
}

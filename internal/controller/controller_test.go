package controller

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// scripted answers each reconcile of a key with the next of its outcomes
// and records when it was called.
type scripted struct {
	mu    sync.Mutex
	next  map[string][]outcome
	calls map[string][]time.Time
}

type outcome struct {
	res Result
	err error
}

func (s *scripted) Reconcile(ctx context.Context, key string) (Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[key] = append(s.calls[key], time.Now())
	if len(s.next[key]) == 0 {
		return Result{}, nil
	}
	o := s.next[key][0]
	s.next[key] = s.next[key][1:]
	return o.res, o.err
}

func (s *scripted) count(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls[key])
}

// fixed is a backoff of n seconds before retry n.
func fixed(n int) time.Duration { return time.Duration(n) * time.Second }

func TestController(t *testing.T) {
	fail := errors.New("ollama down")
	for _, tc := range []struct {
		name    string
		noRetry bool
		script  []outcome
		wait    time.Duration
		want    int // reconciles of key "a" after wait
	}{
		{"success: reconciled once", false, nil, time.Minute, 1},
		{"an error is retried with growing backoff (1 s, 2 s, 3 s)", false, []outcome{{err: fail}, {err: fail}, {err: fail}}, 6500 * time.Millisecond, 4},
		{"a terminal error is not retried", false, []outcome{{err: Terminal(fail)}}, time.Minute, 1},
		{"RequeueAfter looks again later", false, []outcome{{res: Result{RequeueAfter: 10 * time.Second}}}, 11 * time.Second, 2},
		{"no retry: an error is not retried", true, []outcome{{err: fail}}, time.Minute, 1},
		{"no retry: RequeueAfter still holds (a folder settling)", true, []outcome{{res: Result{RequeueAfter: 10 * time.Second}}}, 11 * time.Second, 2},
		{"success forgets the failures: backoff starts over", false, []outcome{{err: fail}, {err: fail}, {res: Result{RequeueAfter: time.Second}}, {err: fail}}, 3*time.Second + 2*time.Second + 1500*time.Millisecond, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := &scripted{next: map[string][]outcome{"a": tc.script}, calls: map[string][]time.Time{}}
				c := New(s, Options{Workers: 2, NoRetry: tc.noRetry, Backoff: fixed})
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { defer close(done); c.Run(ctx) }()
				c.Add("a")
				time.Sleep(tc.wait)
				synctest.Wait()
				if n := s.count("a"); n != tc.want {
					t.Errorf("%d reconciles, want %d", n, tc.want)
				}
				cancel()
				<-done
			})
		})
	}
}

func TestFirstSync(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &scripted{next: map[string][]outcome{"b": {{res: Result{RequeueAfter: time.Hour}}}}, calls: map[string][]time.Time{}}
		c := New(s, Options{Backoff: fixed})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); c.Run(ctx) }()
		if c.Synced() {
			t.Fatal("synced before the first full sync was asked for")
		}
		c.Add("x") // an event before the first sync does not make it
		synctest.Wait()
		if c.Synced() {
			t.Fatal("synced by an event")
		}
		c.AddAll([]string{"a", "b"})
		synctest.Wait()
		if !c.Synced() {
			t.Fatal("not synced after every key of the first sync was reconciled once")
		}
		cancel()
		<-done
	})
	t.Run("an empty first sync is synced at once", func(t *testing.T) {
		c := New(&scripted{}, Options{})
		c.AddAll(nil)
		if !c.Synced() {
			t.Fatal("not synced")
		}
	})
}

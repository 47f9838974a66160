package controller

import (
	"context"
	"errors"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"sync"
	"time"
)

// Result is what a reconcile asks of the controller besides its error.
type Result struct {
	// RequeueAfter, when positive, looks at the key again after it: a
	// folder still settling, a grace period running out.
	RequeueAfter time.Duration
}

// Reconciler makes one key right. It is called again for a key after
// every change to it, so it reads the world afresh each time.
type Reconciler interface {
	Reconcile(ctx context.Context, key string) (Result, error)
}

// terminalError is an error that retrying cannot fix: it is returned so
// the reconcile is counted as failed, and never retried.
type terminalError struct{ err error }

func (e *terminalError) Error() string { return e.err.Error() }
func (e *terminalError) Unwrap() error { return e.err }

// Terminal marks err as one that will not be retried.
func Terminal(err error) error {
	if err == nil {
		return nil
	}
	return &terminalError{err}
}

// Options configure a Controller.
type Options struct {
	Workers int // at least 1
	// NoRetry: a failed reconcile is not retried (run --once: one pass,
	// then exit). RequeueAfter still holds: a key may ask to be looked at
	// again once it has settled.
	NoRetry bool
	// Backoff is the delay before retry number n (1 for the first); nil
	// is exponential from 2 s, capped at 5 min, with ±20% jitter so a
	// fleet of failed keys does not retry in lockstep.
	Backoff func(n int) time.Duration
	Logger  *slog.Logger
}

// Controller feeds keys to a Reconciler.
type Controller struct {
	rec  Reconciler
	opts Options
	q    *queue

	mu sync.Mutex
	// failures counts each key's consecutive failed reconciles; a key is
	// in it only between a failure and its next success.
	failures map[string]int
	// firstSync holds the keys of the first full sync (the first
	// AddAll) not yet reconciled; nil before it. synced is set once it is
	// empty and stays set.
	firstSync map[string]bool
	synced    bool
}

// New returns a controller for rec; Run starts its workers.
func New(rec Reconciler, o Options) *Controller {
	if o.Workers < 1 {
		o.Workers = 1
	}
	if o.Backoff == nil {
		o.Backoff = exponential
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Controller{rec: rec, opts: o, q: newQueue(), failures: map[string]int{}}
}

func exponential(n int) time.Duration {
	d := time.Duration(math.Min(float64(2*time.Second)*math.Pow(2, float64(n-1)), float64(5*time.Minute)))
	return time.Duration(float64(d) * (0.8 + 0.4*mrand.Float64()))
}

// Add marks key dirty: it is reconciled soon, and once more after a
// reconcile of it that is running now.
func (c *Controller) Add(key string) { c.q.Add(key) }

// AddAll marks every key dirty: a resync. The first AddAll is the first
// full sync, which Synced reports on.
func (c *Controller) AddAll(keys []string) {
	c.mu.Lock()
	if c.firstSync == nil && !c.synced {
		c.firstSync = make(map[string]bool, len(keys))
		for _, k := range keys {
			c.firstSync[k] = true
		}
		c.synced = len(keys) == 0
	}
	c.mu.Unlock()
	for _, k := range keys {
		c.q.Add(k)
	}
}

// Synced reports whether every key of the first full sync was reconciled
// once.
func (c *Controller) Synced() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.synced
}

// Run runs the workers until ctx is done, and returns once they all have.
func (c *Controller) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for range c.opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				key, ok := c.q.Get()
				if !ok {
					return
				}
				c.handle(ctx, key)
			}
		}()
	}
	<-ctx.Done()
	c.q.ShutDown()
	wg.Wait()
}

// WaitIdle blocks until nothing is queued or reconciling and no delayed
// add is pending.
func (c *Controller) WaitIdle() { c.q.WaitIdle(true) }

// handle is the one place that reads a reconcile's outcome.
func (c *Controller) handle(ctx context.Context, key string) {
	res, err := c.rec.Reconcile(ctx, key)
	c.q.Done(key)
	c.markSynced(key)
	var te *terminalError
	switch {
	case ctx.Err() != nil:
		// Shutting down: the next start converges.
	case err != nil && (c.opts.NoRetry || errors.As(err, &te)):
		c.forget(key)
	case err != nil:
		c.mu.Lock()
		c.failures[key]++
		n := c.failures[key]
		c.mu.Unlock()
		after := c.opts.Backoff(n)
		if res.RequeueAfter > 0 {
			after = min(after, res.RequeueAfter)
		}
		c.q.AddAfter(key, after)
	case res.RequeueAfter > 0:
		c.forget(key)
		c.q.AddAfter(key, res.RequeueAfter)
	default:
		c.forget(key)
	}
}

func (c *Controller) forget(key string) {
	c.mu.Lock()
	delete(c.failures, key)
	c.mu.Unlock()
}

func (c *Controller) markSynced(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.firstSync == nil || c.synced {
		return
	}
	delete(c.firstSync, key)
	if len(c.firstSync) == 0 {
		c.synced = true
	}
}

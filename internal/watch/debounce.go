package watch

import (
	"slices"
	"sync"
	"time"
)

// debouncer delays dirty keys until they have been quiet for settle, then
// queues them, at most once each, for the Run loop to send. It also holds the
// (coalesced) pending Resync event.
//
// mark, resync, peek and done are called by the Run loop; the per-key timers
// (time.AfterFunc) call fire from their own goroutines and then poke wake so
// the loop looks at the queue again. Everything is driven by the time package,
// so it runs on fake time inside a testing/synctest bubble.
type debouncer struct {
	settle time.Duration
	wake   chan struct{} // capacity 1: "the queue may have grown"

	mu      sync.Mutex
	pending map[string]*pendingKey // keys waiting for their settle time
	queue   []Event                // settled events, in order, waiting to be sent
	queued  map[string]bool        // keys in queue
	resyncQ bool                   // a Resync event is in queue
	stopped bool
	// onChange, if set, hears every mark at once (outside d.mu), before
	// settle: the consumer may prepare work that does not depend on quiet.
	onChange func(key string)
}

type pendingKey struct {
	timer    *time.Timer
	deadline time.Time
}

func newDebouncer(settle time.Duration) *debouncer {
	return &debouncer{
		settle:  settle,
		wake:    make(chan struct{}, 1),
		pending: make(map[string]*pendingKey),
		queued:  make(map[string]bool),
	}
}

// mark records a relevant change of key: it (re)starts the key's settle
// time. With settle <= 0 the key is queued at once. A key that is queued but
// not yet sent goes back to waiting, since it is no longer quiet.
func (d *debouncer) mark(key string) {
	if d.onChange != nil {
		d.onChange(key)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return
	}
	if d.settle <= 0 {
		d.enqueueLocked(Event{Key: key})
		return
	}
	d.unqueueLocked(key)
	deadline := time.Now().Add(d.settle)
	if p := d.pending[key]; p != nil {
		// The timer is already running; fire reschedules it if it goes off
		// before the new deadline. This keeps a burst of writes cheap.
		p.deadline = deadline
		return
	}
	p := &pendingKey{deadline: deadline}
	// fire takes d.mu, which we hold, so p.timer is set before fire reads it.
	p.timer = time.AfterFunc(d.settle, func() { d.fire(key, p) })
	d.pending[key] = p
}

// fire runs when a key's timer goes off.
func (d *debouncer) fire(key string, p *pendingKey) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped || d.pending[key] != p {
		return
	}
	if wait := time.Until(p.deadline); wait > 0 {
		p.timer.Reset(wait) // marked again since the timer was set
		return
	}
	delete(d.pending, key)
	d.enqueueLocked(Event{Key: key})
}

// resync queues a Resync event unless one is already waiting.
func (d *debouncer) resync() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.stopped {
		d.enqueueLocked(Event{Resync: true})
	}
}

func (d *debouncer) enqueueLocked(ev Event) {
	if ev.Resync {
		if d.resyncQ {
			return
		}
		d.resyncQ = true
	} else {
		if d.queued[ev.Key] {
			return
		}
		d.queued[ev.Key] = true
	}
	d.queue = append(d.queue, ev)
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *debouncer) unqueueLocked(key string) {
	if !d.queued[key] {
		return
	}
	delete(d.queued, key)
	d.queue = slices.DeleteFunc(d.queue, func(ev Event) bool { return !ev.Resync && ev.Key == key })
}

// peek returns the next event to send, if any.
func (d *debouncer) peek() (Event, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.queue) == 0 {
		return Event{}, false
	}
	return d.queue[0], true
}

// done removes ev, which has been sent, from the queue.
func (d *debouncer) done(ev Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	i := slices.Index(d.queue, ev)
	if i < 0 {
		return
	}
	d.queue = slices.Delete(d.queue, i, i+1)
	if ev.Resync {
		d.resyncQ = false
	} else {
		delete(d.queued, ev.Key)
	}
}

// stop cancels all timers; later calls do nothing.
func (d *debouncer) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopped = true
	for k, p := range d.pending {
		p.timer.Stop()
		delete(d.pending, k)
	}
}

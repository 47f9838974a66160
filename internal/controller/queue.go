package controller

import (
	"sync"
	"time"
)

// queue is a de-duplicating work queue of keys in the style of
// controller-runtime's workqueue: a key is queued at most once, a key being
// processed is never handed to a second worker, and a key added while it is
// processed is queued again when the worker is done with it.
type queue struct {
	mu   sync.Mutex
	cond *sync.Cond // Get and WaitIdle wait on it; every change broadcasts
	// order is the keys ready to be handed out, oldest first; queued is
	// the same set. A key is never in both queued and processing.
	order  []string
	queued map[string]bool
	// processing: keys a worker holds, from Get to Done.
	processing map[string]bool
	// dirty: keys added while processing; a subset of processing, queued
	// again by Done.
	dirty map[string]bool
	// timers: one pending delayed add per key at most; Add now, Forget
	// and ShutDown stop it.
	timers   map[string]*time.Timer
	shutdown bool
}

func newQueue() *queue {
	q := &queue{
		queued:     map[string]bool{},
		processing: map[string]bool{},
		dirty:      map[string]bool{},
		timers:     map[string]*time.Timer{},
	}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// Add queues key now. It cancels a delayed add of the same key: level
// triggering means the work done now covers it.
func (q *queue) Add(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if t := q.timers[key]; t != nil {
		t.Stop()
		delete(q.timers, key)
	}
	q.addLocked(key)
}

func (q *queue) addLocked(key string) {
	if q.shutdown {
		return
	}
	if q.processing[key] {
		q.dirty[key] = true
		return
	}
	if q.queued[key] {
		return
	}
	q.queued[key] = true
	q.order = append(q.order, key)
	// Broadcast, not Signal: WaitIdle shares the condition with Get.
	q.cond.Broadcast()
}

// AddAfter queues key after d, unless an earlier delayed add is pending.
func (q *queue) AddAfter(key string, d time.Duration) {
	if d <= 0 {
		q.Add(key)
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.shutdown || q.timers[key] != nil {
		return
	}
	q.timers[key] = time.AfterFunc(d, func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		delete(q.timers, key)
		q.addLocked(key)
	})
}

// Get blocks until a key is ready or the queue shuts down.
func (q *queue) Get() (string, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.order) == 0 && !q.shutdown {
		q.cond.Wait()
	}
	if q.shutdown {
		return "", false
	}
	key := q.order[0]
	q.order = q.order[1:]
	delete(q.queued, key)
	q.processing[key] = true
	return key, true
}

// Done ends processing of key, re-queueing it if it was added meanwhile.
func (q *queue) Done(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.processing, key)
	if q.dirty[key] {
		delete(q.dirty, key)
		q.addLocked(key)
	}
	q.cond.Broadcast()
}

// WaitIdle blocks until nothing is queued or processing and, when
// countTimers is set, no delayed add is pending.
func (q *queue) WaitIdle(countTimers bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for !q.shutdown && !(len(q.order) == 0 && len(q.processing) == 0 && (!countTimers || len(q.timers) == 0)) {
		q.cond.Wait()
	}
}

// Forget cancels a delayed add of key.
func (q *queue) Forget(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if t := q.timers[key]; t != nil {
		t.Stop()
		delete(q.timers, key)
		q.cond.Broadcast()
	}
}

// ShutDown wakes every waiter; Get then returns false.
func (q *queue) ShutDown() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.shutdown = true
	for k, t := range q.timers {
		t.Stop()
		delete(q.timers, k)
	}
	q.cond.Broadcast()
}

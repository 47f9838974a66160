package controller

import (
	"testing"
	"testing/synctest"
	"time"
)

func TestQueue(t *testing.T) {
	t.Run("a key is queued once", func(t *testing.T) {
		q := newQueue()
		q.Add("a")
		q.Add("a")
		q.Add("b")
		if k, _ := q.Get(); k != "a" {
			t.Fatalf("got %q", k)
		}
		if k, _ := q.Get(); k != "b" {
			t.Fatalf("got %q, want b (a was queued twice)", k)
		}
	})
	t.Run("a key being processed is not handed out again until Done", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			q := newQueue()
			q.Add("a")
			k, _ := q.Get()
			q.Add("a") // an event while a is being reconciled
			got := make(chan string, 1)
			go func() { k, _ := q.Get(); got <- k }()
			synctest.Wait()
			select {
			case k2 := <-got:
				t.Fatalf("second worker got %q while %q was processing", k2, k)
			default:
			}
			q.Done(k)
			synctest.Wait()
			if k2 := <-got; k2 != "a" {
				t.Fatalf("re-queued %q, want a", k2)
			}
		})
	})
	t.Run("AddAfter waits, Add now cancels the wait", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			q := newQueue()
			q.AddAfter("a", time.Minute)
			got := make(chan string, 1)
			go func() { k, _ := q.Get(); got <- k }()
			time.Sleep(59 * time.Second)
			synctest.Wait()
			if len(got) != 0 {
				t.Fatal("delayed key came early")
			}
			time.Sleep(2 * time.Second)
			synctest.Wait()
			if k := <-got; k != "a" {
				t.Fatalf("got %q", k)
			}
			q.Done("a")
			q.AddAfter("b", time.Hour)
			q.Add("b")
			if k, _ := q.Get(); k != "b" {
				t.Fatalf("got %q", k)
			}
			q.Done("b")
			q.WaitIdle(true) // the cancelled timer is not waited for
			q.ShutDown()
		})
	})
	t.Run("ShutDown wakes Get", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			q := newQueue()
			done := make(chan bool)
			go func() { _, ok := q.Get(); done <- ok }()
			synctest.Wait()
			q.ShutDown()
			if <-done {
				t.Fatal("Get returned a key after ShutDown")
			}
		})
	})
}

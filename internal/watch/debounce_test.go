package watch

import (
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

// drain returns every queued event, as the Run loop would send them.
func drain(d *debouncer) []Event {
	var evs []Event
	for {
		ev, ok := d.peek()
		if !ok {
			return evs
		}
		d.done(ev)
		evs = append(evs, ev)
	}
}

func keys(evs []Event) []string {
	var ks []string
	for _, ev := range evs {
		if ev.Resync {
			ks = append(ks, "<resync>")
		} else {
			ks = append(ks, ev.Key)
		}
	}
	return ks
}

func TestSettleRestartsOnEachEvent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDebouncer(5 * time.Second)
		defer d.stop()

		d.mark("a") // t=0
		time.Sleep(4 * time.Second)
		d.mark("a") // t=4: now due at t=9
		time.Sleep(4 * time.Second)
		synctest.Wait()
		if got := drain(d); len(got) != 0 {
			t.Fatalf("t=8s: got %v before 5s of quiet", keys(got))
		}
		d.mark("a") // t=8: now due at t=13
		time.Sleep(4*time.Second + 999*time.Millisecond)
		synctest.Wait()
		if got := drain(d); len(got) != 0 {
			t.Fatalf("t=12.999s: got %v before 5s of quiet", keys(got))
		}
		time.Sleep(time.Millisecond) // t=13
		synctest.Wait()
		if got := keys(drain(d)); !slices.Equal(got, []string{"a"}) {
			t.Fatalf("t=13s: got %v, want [a]", got)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if got := drain(d); len(got) != 0 {
			t.Fatalf("later: got %v, want nothing", keys(got))
		}
	})
}

func TestSettleIsPerKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDebouncer(5 * time.Second)
		defer d.stop()

		d.mark("a") // due at 5
		time.Sleep(3 * time.Second)
		d.mark("b") // due at 8
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if got := keys(drain(d)); !slices.Equal(got, []string{"a"}) {
			t.Fatalf("t=5s: got %v, want [a]", got)
		}
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if got := keys(drain(d)); !slices.Equal(got, []string{"b"}) {
			t.Fatalf("t=8s: got %v, want [b]", got)
		}
	})
}

func TestCoalescing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDebouncer(5 * time.Second)
		defer d.stop()

		for range 100 {
			d.mark("a")
			d.mark("b")
		}
		d.resync()
		d.resync()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		// Nobody consumed anything yet: more changes and resyncs must not
		// queue the same key (or Resync) twice.
		d.resync()
		got := keys(drain(d))
		slices.Sort(got)
		if want := []string{"<resync>", "a", "b"}; !slices.Equal(got, want) {
			t.Fatalf("got %v, want %v", got, want)
		}
		// Once sent, a key can be queued again.
		d.mark("a")
		d.resync()
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if got := keys(drain(d)); !slices.Equal(got, []string{"<resync>", "a"}) {
			t.Fatalf("second round: got %v, want [<resync> a]", got)
		}
	})
}

func TestQueuedKeyWaitsAgainWhenMarked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDebouncer(5 * time.Second)
		defer d.stop()

		d.mark("a")
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if _, ok := d.peek(); !ok {
			t.Fatal("a not queued after settle")
		}
		d.mark("a") // changed again before the consumer took it
		if ev, ok := d.peek(); ok {
			t.Fatalf("queued %v although a changed again", ev)
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if got := keys(drain(d)); !slices.Equal(got, []string{"a"}) {
			t.Fatalf("got %v, want [a]", got)
		}
	})
}

func TestSettleZero(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDebouncer(0)
		defer d.stop()

		d.mark("a")
		d.mark("b")
		d.mark("a")
		// No time passes: keys are queued at once, each once, in order.
		if got := keys(drain(d)); !slices.Equal(got, []string{"a", "b"}) {
			t.Fatalf("got %v, want [a b]", got)
		}
		d.mark("a")
		if got := keys(drain(d)); !slices.Equal(got, []string{"a"}) {
			t.Fatalf("got %v, want [a]", got)
		}
	})
}

func TestStoppedDebouncerQueuesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDebouncer(time.Second)
		d.mark("a")
		d.stop()
		d.mark("b")
		d.resync()
		time.Sleep(time.Minute)
		synctest.Wait()
		if got := drain(d); len(got) != 0 {
			t.Fatalf("got %v after stop", keys(got))
		}
	})
}

func TestOnChangeHearsEveryMarkBeforeSettle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDebouncer(5 * time.Second)
		var heard []string
		d.onChange = func(key string) { heard = append(heard, key) }
		d.mark("a")
		d.mark("a")
		d.mark("b")
		if len(heard) != 3 || heard[0] != "a" || heard[2] != "b" {
			t.Fatalf("heard %v, want [a a b]", heard)
		}
		if _, ok := d.peek(); ok {
			t.Fatal("a key was emitted before settle")
		}
		d.stop()
	})
}

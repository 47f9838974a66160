package cli

import (
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// startupExtend is how often, and by how much, the start-up timeout is
// extended while the first full sync runs.
const (
	startupExtendEvery = 30 * time.Second
	startupExtendBy    = 90 * time.Second
)

// notifier speaks systemd's sd_notify protocol (Type=notify) on the socket
// named by $NOTIFY_SOCKET. Outside systemd the variable is unset and every
// call does nothing.
//
// The daemon sends READY=1 only after the first full sync, which can take
// minutes when big adapters are waiting. So that systemd does not kill the
// service for exceeding TimeoutStartSec meanwhile, the notifier extends the
// start-up timeout (EXTEND_TIMEOUT_USEC) until READY=1 or STOPPING=1.
type notifier struct {
	addr string
	log  *slog.Logger

	warnOnce sync.Once
	// mu orders the start-up extension against READY=1 and STOPPING=1,
	// so that no extension is sent after them.
	mu       sync.Mutex
	started  chan struct{} // closed at the first READY=1 or STOPPING=1
	doneOnce sync.Once
}

func newNotifier(getenv func(string) string, log *slog.Logger) *notifier {
	return &notifier{addr: getenv("NOTIFY_SOCKET"), log: log, started: make(chan struct{})}
}

// enabled reports whether a notify socket is set.
func (n *notifier) enabled() bool { return n.addr != "" }

// Notify is daemon.Options.Notify: it sends state, adding a STATUS= line
// for `systemctl status`, and MONOTONIC_USEC= to RELOADING=1 as systemd
// asks.
func (n *notifier) Notify(state string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	msg := state
	switch state {
	case "READY=1":
		msg += "\nSTATUS=ready: watching the drop directory"
		n.doneOnce.Do(func() { close(n.started) })
	case "RELOADING=1":
		msg += fmt.Sprintf("\nMONOTONIC_USEC=%d\nSTATUS=reloading the config", monotonicUsec())
	case "STOPPING=1":
		msg += "\nSTATUS=stopping"
		n.doneOnce.Do(func() { close(n.started) })
	}
	n.send(msg)
}

// extendStartup keeps extending the start-up timeout until READY=1 or
// STOPPING=1 has been sent, or stop is closed.
func (n *notifier) extendStartup(stop <-chan struct{}) {
	if !n.enabled() {
		return
	}
	msg := fmt.Sprintf("EXTEND_TIMEOUT_USEC=%d\nSTATUS=starting: first full sync of the drop directory in progress", startupExtendBy.Microseconds())
	t := time.NewTicker(startupExtendEvery)
	defer t.Stop()
	for {
		n.mu.Lock()
		select {
		case <-n.started:
			n.mu.Unlock()
			return
		default:
		}
		n.send(msg)
		n.mu.Unlock()
		select {
		case <-n.started:
			return
		case <-stop:
			return
		case <-t.C:
		}
	}
}

func (n *notifier) send(msg string) {
	if !n.enabled() {
		return
	}
	if err := sdNotify(n.addr, msg); err != nil {
		n.warnOnce.Do(func() {
			n.log.Warn("cannot notify systemd (NOTIFY_SOCKET)", "socket", n.addr, "err", err)
		})
	}
}

// sdNotify sends one datagram to a notify socket: a path, or an abstract
// socket written with a leading "@".
func sdNotify(addr, msg string) error {
	if strings.HasPrefix(addr, "vsock:") {
		return fmt.Errorf("vsock notify sockets are not supported")
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetWriteDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return err
	}
	_, err = conn.Write([]byte(msg))
	return err
}

func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1e3
}

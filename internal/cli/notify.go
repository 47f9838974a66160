package cli

import "github.com/coreos/go-systemd/v22/daemon"

// sdNotify tells systemd about the daemon's state (Type=notify). Outside
// systemd NOTIFY_SOCKET is unset and this does nothing.
func sdNotify(state string) {
	daemon.SdNotify(false, state)
}

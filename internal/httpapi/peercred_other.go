//go:build !linux

package httpapi

import (
	"errors"
	"net"
)

// readPeerCred has no SO_PEERCRED to read here; every caller is refused.
func readPeerCred(*net.UnixConn) (*peerCred, error) {
	return nil, errors.New("SO_PEERCRED is Linux only")
}

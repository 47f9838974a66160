package httpapi

import (
	"net"
	"syscall"
)

func readPeerCred(c *net.UnixConn) (*peerCred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *syscall.Ucred
	var cerr error
	err = raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return &peerCred{uid: int(cred.Uid), gid: int(cred.Gid)}, nil
}

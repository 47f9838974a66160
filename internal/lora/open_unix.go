//go:build unix

package lora

import "syscall"

// adapterOpenFlags makes opening a FIFO return at once instead of waiting
// for a writer; regular files ignore the flag.
const adapterOpenFlags = syscall.O_NONBLOCK

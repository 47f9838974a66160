//go:build !unix

package lora

// adapterOpenFlags is empty where opens of special files do not block.
const adapterOpenFlags = 0

//go:build !unix

package spec

// adapterOpenFlags is empty where opens of special files do not block.
const adapterOpenFlags = 0

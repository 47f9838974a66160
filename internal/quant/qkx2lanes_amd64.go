package quant

import "golang.org/x/sys/cpu"

// haveQkx2Lanes says whether qkx2Grids and qxSearch run here; a variable
// so that tests can compare both paths.
var haveQkx2Lanes = cpu.X86.HasAVX2

// qkx2Grids is the grid loop of makeQkx2Quants on every active lane of b
// (qkx2_amd64.s, AVX2).
//
//go:noescape
func qkx2Grids(b *qkx2Lanes)

// qxSearch is makeQxQuants on the 8 lanes of b (qx_amd64.s, AVX2).
//
//go:noescape
func qxSearch(b *qxLanes)

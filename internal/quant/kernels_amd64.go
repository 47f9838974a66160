//go:build amd64 && !purego

package quant

import "golang.org/x/sys/cpu"

// What this CPU runs of kernelTable. The purego tag leaves this file and
// the assembly out (kernels_other.go).
const asmBuilt = true

var (
	cpuAVX2   = cpu.X86.HasAVX2
	cpuAVX512 = cpu.X86.HasAVX2 && cpu.X86.HasAVX512F && cpu.X86.HasAVX512DQ
)

// qkx2Grids8 is makeQkx2Quants on lanes 8·half … 8·half+7 of b
// (qkx2lanes_amd64.s, AVX2).
//
//go:noescape
func qkx2Grids8(b *qkx2Lanes, half int)

// qkx2Grids16 is makeQkx2Quants on all 16 lanes of b (AVX-512).
//
//go:noescape
func qkx2Grids16(b *qkx2Lanes)

// qxSearch is makeQxQuants on the 8 lanes of b (qx_amd64.s, AVX2).
//
//go:noescape
func qxSearch(b *qxLanes)

// requantSub32 is requantK's rounding of one sub-block of 32
// (requant_amd64.s, AVX2).
//
//go:noescape
func requantSub32(x *float32, L *uint8, dm, dj float32, nmax int32)

//go:build !amd64 || purego

package quant

// Without the assembly (another architecture, or the purego tag) only the
// scalar kernels run; kernelTable never selects these.
const asmBuilt = false

const (
	cpuAVX2   = false
	cpuAVX512 = false
)

func qkx2Grids8(*qkx2Lanes, int) { panic("quant: qkx2Grids8 without AVX2") }
func qkx2Grids16(*qkx2Lanes)     { panic("quant: qkx2Grids16 without AVX-512") }
func qxSearch(*qxLanes)          { panic("quant: qxSearch without AVX2") }

func requantSub32(*float32, *uint8, float32, float32, int32) {
	panic("quant: requantSub32 without AVX2")
}

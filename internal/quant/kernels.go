package quant

// kernelSet is one way to run the scale searches of Q2_K, Q4_K, Q5_K and
// Q6_K. Every set gives the same bytes (TestQkx2LanesEqualScalar,
// FuzzKernelsAgree): the assembly does the scalar code's float32
// operations in its order, so a set changes speed, never output.
type kernelSet struct {
	name string
	// lanes is how many groups one search instruction holds: 0 runs the Go
	// code (makeQkx2Quants, makeQxQuants, requantK's loop); 8 runs
	// qkx2Grids8, qxSearch and requantSub32 (AVX2); 16 runs qkx2Grids16
	// (AVX-512) and the AVX2 ones for the rest.
	lanes int
	// runs: this build and CPU can run the set. The assembly is not built
	// on other architectures or with the purego tag (kernels_amd64.go).
	runs bool
}

// kernelTable is every set, fastest first; scalar runs everywhere.
var kernelTable = [...]kernelSet{
	{name: "AVX-512", lanes: 16, runs: cpuAVX512},
	{name: "AVX2", lanes: 8, runs: cpuAVX2},
	{name: "scalar", lanes: 0, runs: true},
}

// kernels is the set Quantize runs: the fastest of kernelTable this
// machine runs, chosen once when the package initializes. Only tests and
// benchmarks change it, to compare the sets.
var kernels = fastestKernels()

func fastestKernels() kernelSet {
	for _, k := range kernelTable {
		if k.runs {
			return k
		}
	}
	panic("quant: the scalar kernels must always run")
}

package lora

// kernelSet is one way to run the merge's inner loop, addDelta. Every set
// gives the same bits (TestAddDeltaPathsAgree, FuzzAddDeltaKernelsAgree):
// the assembly does the Go loop's float64 operations in its order, so a
// set changes speed, never output.
type kernelSet struct {
	name string
	avx2 bool // addDeltaAVX2 runs the whole multiples of 16
	// runs: this build and CPU can run the set. The assembly is not built
	// on other architectures or with the purego tag (kernels_amd64.go).
	runs bool
}

// kernelTable is every set, fastest first; scalar runs everywhere.
var kernelTable = [...]kernelSet{
	{name: "AVX2", avx2: true, runs: cpuAVX2},
	{name: "scalar", runs: true},
}

// kernels is the set the merge runs: the fastest of kernelTable this
// machine runs, chosen once when the package initializes. Only tests
// change it, to compare the sets.
var kernels = fastestKernels()

func fastestKernels() kernelSet {
	for _, k := range kernelTable {
		if k.runs {
			return k
		}
	}
	panic("lora: the scalar kernels must always run")
}

package quant

import "testing"

// For the tests: the f16 conversions and nearest_int.
var (
	ToHalf     = toHalf
	FromHalf   = fromHalf
	NearestInt = nearestInt
)

// Kernel is one row of kernelTable, for the tests that compare the sets.
type Kernel struct {
	Name string
	Runs bool   // this build and CPU run it
	Why  string // when not, why not
}

// Kernels is kernelTable, fastest first; the last row is the scalar set,
// which always runs.
func Kernels() []Kernel {
	var ks []Kernel
	for _, k := range kernelTable {
		why := ""
		switch {
		case k.runs:
		case !asmBuilt:
			why = "the assembly is not in this build (purego tag or not amd64)"
		default:
			why = "this CPU lacks " + k.name
		}
		ks = append(ks, Kernel{Name: k.name, Runs: k.runs, Why: why})
	}
	return ks
}

// DefaultKernels is the name of the set chosen at init.
func DefaultKernels() string { return kernels.name }

// UseKernels makes Quantize run the named set until tb ends. The set must
// run here.
func UseKernels(tb testing.TB, name string) {
	tb.Helper()
	for _, k := range kernelTable {
		if k.name != name {
			continue
		}
		if !k.runs {
			tb.Fatalf("kernels %s do not run here", name)
		}
		was := kernels
		kernels = k
		tb.Cleanup(func() { kernels = was })
		return
	}
	tb.Fatalf("no kernels named %s", name)
}

package quant

import (
	"testing"
	"unsafe"
)

// TestQkx2LanesLayout holds qkx2Lanes to the offsets qkx2_amd64.s reads.
func TestQkx2LanesLayout(t *testing.T) {
	var b qkx2Lanes
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"x", unsafe.Offsetof(b.x), 0},
		{"w", unsafe.Offsetof(b.w), 1024},
		{"xm", unsafe.Offsetof(b.xm), 2048},
		{"cur", unsafe.Offsetof(b.cur), 3072},
		{"L", unsafe.Offsetof(b.L), 4096},
		{"mx", unsafe.Offsetof(b.mx), 5120},
		{"mn", unsafe.Offsetof(b.mn), 5152},
		{"best", unsafe.Offsetof(b.best), 5184},
		{"scale", unsafe.Offsetof(b.scale), 5216},
		{"sumW", unsafe.Offsetof(b.sumW), 5248},
		{"sumX", unsafe.Offsetof(b.sumX), 5280},
		{"active", unsafe.Offsetof(b.active), 5312},
		{"num", unsafe.Offsetof(b.num), 5344},
		{"nbytes", unsafe.Offsetof(b.nbytes), 5472},
		{"nstep", unsafe.Offsetof(b.nstep), 5480},
		{"nmax", unsafe.Offsetof(b.nmax), 5488},
		{"useMad", unsafe.Offsetof(b.useMad), 5492},
	} {
		if c.got != c.want {
			t.Errorf("qkx2Lanes.%s at %d, the assembly reads it at %d", c.name, c.got, c.want)
		}
	}
}

// TestQxLanesLayout holds qxLanes to the offsets qx_amd64.s reads.
func TestQxLanesLayout(t *testing.T) {
	var b qxLanes
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"x", unsafe.Offsetof(b.x), 0},
		{"w", unsafe.Offsetof(b.w), 512},
		{"wx", unsafe.Offsetof(b.wx), 1024},
		{"cur", unsafe.Offsetof(b.cur), 1536},
		{"L", unsafe.Offsetof(b.L), 2048},
		{"scale", unsafe.Offsetof(b.scale), 2560},
		{"best", unsafe.Offsetof(b.best), 2592},
		{"active", unsafe.Offsetof(b.active), 2624},
		{"num", unsafe.Offsetof(b.num), 2656},
		{"nmax", unsafe.Offsetof(b.nmax), 2736},
		{"ncand", unsafe.Offsetof(b.ncand), 2740},
	} {
		if c.got != c.want {
			t.Errorf("qxLanes.%s at %d, the assembly reads it at %d", c.name, c.got, c.want)
		}
	}
}

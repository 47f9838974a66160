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
		{"w", unsafe.Offsetof(b.w), 2048},
		{"xm", unsafe.Offsetof(b.xm), 4096},
		{"cur", unsafe.Offsetof(b.cur), 6144},
		{"L", unsafe.Offsetof(b.L), 8192},
		{"mx", unsafe.Offsetof(b.mx), 10240},
		{"mn", unsafe.Offsetof(b.mn), 10304},
		{"best", unsafe.Offsetof(b.best), 10368},
		{"scale", unsafe.Offsetof(b.scale), 10432},
		{"sumW", unsafe.Offsetof(b.sumW), 10496},
		{"sumX", unsafe.Offsetof(b.sumX), 10560},
		{"active", unsafe.Offsetof(b.active), 10624},
		{"num", unsafe.Offsetof(b.num), 10688},
		{"nbytes", unsafe.Offsetof(b.nbytes), 10816},
		{"nstep", unsafe.Offsetof(b.nstep), 10824},
		{"nmax", unsafe.Offsetof(b.nmax), 10832},
		{"useMad", unsafe.Offsetof(b.useMad), 10836},
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

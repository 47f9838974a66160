//go:build !amd64

package quant

var haveQkx2Lanes = false

func qkx2Grids(*qkx2Lanes) { panic("quant: qkx2Grids without AVX2") }

func qxSearch(*qxLanes) { panic("quant: qxSearch without AVX2") }

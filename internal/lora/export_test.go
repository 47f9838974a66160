package lora

// Exported for the external tests only.
const MaxAdapterRank = maxAdapterRank

var FloatDTypes = floatDTypes

// SetWindowElems sets the elements per worker and window, returning a
// function that restores the default.
func SetWindowElems(n int) (restore func()) {
	old := windowElems
	windowElems = n
	return func() { windowElems = old }
}

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

// RankFor parses config and returns the rank it gives module.
func RankFor(config []byte, module string) int {
	s, err := parsePEFTConfig("adapter_config.json", config)
	if err != nil {
		panic(err)
	}
	return s.rankFor(module)
}

// Selects parses config and reports whether it targets module.
func Selects(config []byte, module string, linear bool) bool {
	s, err := parsePEFTConfig("adapter_config.json", config)
	if err != nil {
		panic(err)
	}
	ok, _ := s.selects(module, linear)
	return ok
}

package quant

// For the tests: the f16 conversions and nearest_int.
var (
	ToHalf     = toHalf
	FromHalf   = fromHalf
	NearestInt = nearestInt
)

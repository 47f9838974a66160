package quant

// For the tests: the f16 conversions and nearest_int.
var (
	ToHalf     = toHalf
	FromHalf   = fromHalf
	NearestInt = nearestInt
)

// HaveQkx2Lanes switches the SIMD search off and on, to compare both paths.
var HaveQkx2Lanes = &haveQkx2Lanes

// HaveLanes16 switches AVX-512 off and on (AVX2 then runs 8 lanes at a time).
var HaveLanes16 = &haveLanes16

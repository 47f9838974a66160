package lora

// Exported for the external tests only.
const MaxAdapterRank = maxAdapterRank

var FloatDTypes = floatDTypes

package lora

import (
	"reflect"
	"testing"
)

func TestPermuteRowsMatchesNumpy(t *testing.T) {
	// np.arange(8).reshape(2, 2, 2, 1).swapaxes(1, 2).reshape(8): one column,
	// two heads of four rows each.
	in := []float32{0, 1, 2, 3, 4, 5, 6, 7}
	want := []float32{0, 2, 1, 3, 4, 6, 5, 7}
	if got := PermuteRows(in, 8, 1, 2); !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	// Whole rows move together.
	in2 := []float32{0, 0, 1, 1, 2, 2, 3, 3}
	if got := PermuteRows(in2, 4, 2, 1); !reflect.DeepEqual(got, []float32{0, 0, 2, 2, 1, 1, 3, 3}) {
		t.Errorf("got %v", got)
	}
}

package s3source

import (
	"reflect"
	"testing"
)

func TestDecide(t *testing.T) {
	v1 := map[string]object{"lora.gguf": {Size: 10, ETag: "aa"}}
	v2 := map[string]object{"lora.gguf": {Size: 11, ETag: "bb"}}
	ready := map[string]object{"lora.gguf": {Size: 10, ETag: "aa"}, "READY": {Size: 0, ETag: "cc"}}
	type m = map[string]map[string]object
	type b = map[string]bool
	for _, tc := range []struct {
		name string
		o    observation
		want plan
	}{
		{"a folder seen once waits", observation{listing: m{"a": v1}}, plan{waiting: []string{"a"}}},
		{"the same listing twice is mirrored", observation{listing: m{"a": v1}, last: m{"a": v1}}, plan{mirror: []string{"a"}}},
		{"a listing that changed waits again", observation{listing: m{"a": v2}, last: m{"a": v1}}, plan{waiting: []string{"a"}}},
		{"the ready marker is enough at first sight", observation{listing: m{"a": ready}, readyFile: "READY"}, plan{mirror: []string{"a"}}},
		{"without the marker a stable folder waits", observation{listing: m{"a": v1}, last: m{"a": v1}, readyFile: "READY"}, plan{waiting: []string{"a"}}},
		{"mirrored and unchanged is left alone", observation{listing: m{"a": v1}, last: m{"a": v1}, owned: m{"a": v1}, local: b{"a": true}}, plan{}},
		{"a new version is mirrored once stable", observation{listing: m{"a": v2}, last: m{"a": v2}, owned: m{"a": v1}, local: b{"a": true}}, plan{mirror: []string{"a"}}},
		{"a mirrored folder deleted locally comes back", observation{listing: m{"a": v1}, last: m{"a": v1}, owned: m{"a": v1}}, plan{mirror: []string{"a"}}},
		{"a folder made by hand is a clash, never overwritten", observation{listing: m{"a": v1}, last: m{"a": v1}, local: b{"a": true}}, plan{clash: []string{"a"}}},
		{"a gone prefix removes the folder this source made", observation{listing: m{"b": v1}, last: m{"b": v1}, owned: m{"a": v1, "b": v1}, local: b{"a": true, "b": true}}, plan{remove: []string{"a"}}},
		{"a folder made by hand is never removed", observation{listing: m{"b": v1}, last: m{"b": v1}, owned: m{"b": v1}, local: b{"a": true, "b": true}}, plan{}},
		{"an empty listing holds everything", observation{listing: m{}, last: m{"a": v1, "b": v1}, owned: m{"a": v1, "b": v1}, local: b{"a": true, "b": true}}, plan{hold: 2}},
		{"a held folder removed by hand is forgotten", observation{listing: m{}, owned: m{"a": v1, "b": v1}, local: b{"b": true}}, plan{hold: 1, forget: []string{"a"}}},
		{"all held folders removed by hand end the hold", observation{listing: m{}, owned: m{"a": v1, "b": v1}}, plan{forget: []string{"a", "b"}}},
		{"an empty listing with nothing mirrored is fine", observation{listing: m{}, last: m{"a": v1}}, plan{}},
	} {
		if got := decide(tc.o); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
}

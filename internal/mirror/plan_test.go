package mirror

import (
	"reflect"
	"testing"
)

func TestDecide(t *testing.T) {
	s3, hub := s3Kind.policy, hubKind.policy
	// S3 folders: v1 and v2 are two versions of a listing; ready has its
	// ready_file marker, unmarked does not.
	v1 := offer{Version: "v1"}
	v2 := offer{Version: "v2"}
	ready := offer{Version: "v1", Ready: readyNow}
	unmarked := offer{Version: "v1", Ready: notReady}
	// A hub repo at two commits: always complete.
	c1 := offer{Version: "c1", Ready: readyNow, Commit: "c1"}
	c2 := offer{Version: "c2", Ready: readyNow, Commit: "c2"}
	type f = map[string]offer
	type v = map[string]string
	type b = map[string]bool
	type n = map[string]int
	for _, tc := range []struct {
		name string
		o    observation
		want plan
	}{
		// S3
		{"a folder seen once waits", observation{policy: s3, offers: f{"a": v1}}, plan{waiting: []string{"a"}}},
		{"the same listing twice is mirrored", observation{policy: s3, offers: f{"a": v1}, last: v{"a": "v1"}}, plan{mirror: []string{"a"}}},
		{"a listing that changed waits again", observation{policy: s3, offers: f{"a": v2}, last: v{"a": "v1"}}, plan{waiting: []string{"a"}}},
		{"the ready marker is enough at first sight", observation{policy: s3, offers: f{"a": ready}}, plan{mirror: []string{"a"}}},
		{"without the marker a stable folder waits", observation{policy: s3, offers: f{"a": unmarked}, last: v{"a": "v1"}}, plan{waiting: []string{"a"}}},
		{"mirrored and unchanged is left alone", observation{policy: s3, offers: f{"a": v1}, last: v{"a": "v1"}, owned: v{"a": "v1"}, local: b{"a": true}}, plan{}},
		{"a new version is mirrored once stable", observation{policy: s3, offers: f{"a": v2}, last: v{"a": "v2"}, owned: v{"a": "v1"}, local: b{"a": true}}, plan{mirror: []string{"a"}}},
		{"a mirrored folder deleted locally comes back", observation{policy: s3, offers: f{"a": v1}, last: v{"a": "v1"}, owned: v{"a": "v1"}}, plan{mirror: []string{"a"}}},
		{"a folder made by hand is a clash, never overwritten", observation{policy: s3, offers: f{"a": v1}, last: v{"a": "v1"}, local: b{"a": true}}, plan{clash: []string{"a"}}},
		{"a gone prefix removes the folder this source made", observation{policy: s3, offers: f{"b": v1}, last: v{"b": "v1"}, owned: v{"a": "v1", "b": "v1"}, local: b{"a": true, "b": true}}, plan{remove: []string{"a"}}},
		{"a folder made by hand is never removed", observation{policy: s3, offers: f{"b": v1}, last: v{"b": "v1"}, owned: v{"b": "v1"}, local: b{"a": true, "b": true}}, plan{}},
		{"an empty listing holds everything", observation{policy: s3, offers: f{}, last: v{"a": "v1", "b": "v1"}, owned: v{"a": "v1", "b": "v1"}, local: b{"a": true, "b": true}}, plan{hold: 2}},
		{"a held folder removed by hand is forgotten", observation{policy: s3, offers: f{}, owned: v{"a": "v1", "b": "v1"}, local: b{"b": true}}, plan{hold: 1, forget: []string{"a"}}},
		{"all held folders removed by hand end the hold", observation{policy: s3, offers: f{}, owned: v{"a": "v1", "b": "v1"}}, plan{forget: []string{"a", "b"}}},
		{"an empty listing with nothing mirrored is fine", observation{policy: s3, offers: f{}, last: v{"a": "v1"}}, plan{}},
		{"a listing that fails does nothing", observation{policy: s3, failed: outage, owned: v{"a": "v1"}, local: b{"a": true}}, plan{outage: true}},

		// Hub
		{"a commit is mirrored at first sight", observation{policy: hub, sameAccess: true, offers: f{"a": c1}}, plan{mirror: []string{"a"}}},
		{"the same commit is left alone", observation{policy: hub, sameAccess: true, offers: f{"a": c1}, last: v{"a": "c1"}, owned: v{"a": "c1"}, local: b{"a": true}}, plan{}},
		{"a new commit is mirrored at once", observation{policy: hub, sameAccess: true, offers: f{"a": c2}, last: v{"a": "c1"}, owned: v{"a": "c1"}, local: b{"a": true}}, plan{mirror: []string{"a"}}},
		{"a folder of that name made by hand is a clash", observation{policy: hub, sameAccess: true, offers: f{"a": c1}, local: b{"a": true}}, plan{clash: []string{"a"}}},
		{"an outage removes nothing", observation{policy: hub, failed: outage, sameAccess: true, owned: v{"a": "c1"}, local: b{"a": true}}, plan{outage: true}},
		{"an outage after a first not-found removes nothing", observation{policy: hub, failed: outage, sameAccess: true, absent: n{"a": 1}, owned: v{"a": "c1"}, local: b{"a": true}}, plan{outage: true}},
		{"a repo deleted upstream is kept at the first not-found", observation{policy: hub, failed: gone, sameAccess: true, owned: v{"a": "c1"}, local: b{"a": true}}, plan{pending: []string{"a"}}},
		{"and removed at the second in a row", observation{policy: hub, failed: gone, sameAccess: true, absent: n{"a": 1}, owned: v{"a": "c1"}, local: b{"a": true}}, plan{remove: []string{"a"}}},
		{"not found under other credentials is an outage", observation{policy: hub, failed: gone, absent: n{"a": 1}, owned: v{"a": "c1"}, local: b{"a": true}}, plan{outage: true}},
		{"not found with nothing mirrored does nothing", observation{policy: hub, failed: gone, sameAccess: true}, plan{}},
		{"a repo back after one not-found stays", observation{policy: hub, sameAccess: true, offers: f{"a": c1}, absent: n{"a": 1}, owned: v{"a": "c1"}, local: b{"a": true}}, plan{}},
	} {
		if got := decide(tc.o); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
}

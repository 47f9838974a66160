package mirror_test

import (
	"testing"
	"time"

	"github.com/adapterd/adapterd/internal/mirror"
	"github.com/adapterd/adapterd/internal/spec"
)

// An edited entry is the same source and keeps its folders on reload; only
// one that names other folders leaves the config (and is retired).
func TestSameSourceAcrossAReload(t *testing.T) {
	hubSrc := func(edit func(h *spec.HubSource)) spec.Source {
		h := &spec.HubSource{Repo: "org/a", Revision: "main", Key: "a", Interval: time.Minute}
		edit(h)
		return spec.Source{Kind: spec.SourceHub, Hub: h}
	}
	s3Src := func(edit func(s *spec.S3Source)) spec.Source {
		s := &spec.S3Source{URL: "s3://b/p/", Bucket: "b", Prefix: "p/", Interval: time.Minute}
		edit(s)
		return spec.Source{Kind: spec.SourceS3, S3: s}
	}
	same := func(*spec.HubSource) {}
	for _, tc := range []struct {
		name string
		a, b spec.Source
		want bool
	}{
		{"hub: a new revision", hubSrc(same), hubSrc(func(h *spec.HubSource) { h.Revision = "v2" }), true},
		{"hub: a new subfolder and sidecar", hubSrc(same), hubSrc(func(h *spec.HubSource) { h.Subfolder = "x"; h.Sidecar = &spec.Sidecar{Model: "m"} }), true},
		{"hub: another repo into the same folder", hubSrc(same), hubSrc(func(h *spec.HubSource) { h.Repo = "org/b" }), true},
		{"hub: another key", hubSrc(same), hubSrc(func(h *spec.HubSource) { h.Key = "b" }), false},
		{"s3: a new interval", s3Src(func(*spec.S3Source) {}), s3Src(func(s *spec.S3Source) { s.Interval = time.Hour }), true},
		{"s3: another endpoint", s3Src(func(*spec.S3Source) {}), s3Src(func(s *spec.S3Source) { s.Endpoint = "http://x:1" }), false},
		{"another kind", hubSrc(same), s3Src(func(*spec.S3Source) {}), false},
	} {
		if got := mirror.SameSource(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: SameSource %v, want %v", tc.name, got, tc.want)
		}
	}
}

package spec

import (
	"strings"
	"testing"
	"time"
)

func TestSources_S3EntryParsesWithDefaults(t *testing.T) {
	c, err := ParseConfig([]byte(`drop_dir: /d
sources:
  - s3: s3://team-adapters/prod
    endpoint: http://127.0.0.1:8333/
    path_style: true
  - s3: s3://other/
    region: eu-west-1
    interval: 10s
`), configFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Sources) != 2 {
		t.Fatalf("got %d sources, want 2", len(c.Sources))
	}
	a, b := c.Sources[0].S3, c.Sources[1].S3
	if a.URL != "s3://team-adapters/prod/" || a.Bucket != "team-adapters" || a.Prefix != "prod/" || a.Endpoint != "http://127.0.0.1:8333" || !a.PathStyle || a.Interval != DefaultS3Interval {
		t.Errorf("first source: %+v", a)
	}
	if b.URL != "s3://other/" || b.Prefix != "" || b.Region != "eu-west-1" || b.Interval != 10*time.Second || b.Endpoint != "" {
		t.Errorf("second source: %+v", b)
	}
	if c.Sources[0].Name() != "s3://team-adapters/prod/" || c.Sources[0].Line != 3 {
		t.Errorf("name %q line %d", c.Sources[0].Name(), c.Sources[0].Line)
	}
}

func TestSources_BadEntriesNameTheLineAndTheFix(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"sources: s3://b/\n", "config.yaml:2: sources must be a list"},
		{"sources:\n  - hub: org/repo\n", "config.yaml:3: sources: hub entries are not yet available"},
		{"sources:\n  - endpoint: http://x\n", "config.yaml:3: this sources entry names no kind"},
		{"sources:\n  - s3: s3://b/\n    hub: x/y\n", "has both s3 and hub"},
		{"sources:\n  - s3: http://b/p\n", "config.yaml:3: s3: \"http://b/p\" is not an s3:// URL"},
		{"sources:\n  - s3: s3:///p\n", "no usable bucket name"},
		{"sources:\n  - s3: s3://b/p\n    bucket: x\n", `config.yaml:4: unknown key "bucket" in an s3 source; known keys are s3, endpoint`},
		{"sources:\n  - s3: s3://b/p\n    interval: 0s\n", "interval must be more than 0"},
		{"sources:\n  - s3: s3://b/p\n    interval: 60\n", "60 has no unit"},
		{"sources:\n  - s3: s3://b/p\n    path_style: yes\n", "path_style must be true or false"},
		{"sources:\n  - s3: s3://b/p\n    endpoint: 127.0.0.1:8333\n", "endpoint: \"127.0.0.1:8333\" is not an http:// or https:// URL"},
		{"sources:\n  - s3: s3://b/p\n    endpoint: http://h/x\n", "has a path"},
		{"sources:\n  - s3: s3://b/p\n  - s3: s3://b/p/\n", "config.yaml:4: source s3://b/p/ is listed twice (first on line 3)"},
		{"sources:\n  - s3:\n", "s3 has no value"},
		{"sources:\n  - s3: s3://b//p\n", "empty folder name"},
	} {
		_, err := ParseConfig([]byte("drop_dir: /d\n"+tc.yaml), "/etc/adapterd/config.yaml")
		if err == nil {
			t.Errorf("%q: no error, want %q", tc.yaml, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q:\n got %s\nwant %s", tc.yaml, err, tc.want)
		}
	}
}

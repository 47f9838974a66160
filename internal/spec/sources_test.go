package spec

import (
	"reflect"
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

func TestSources_HubEntries(t *testing.T) {
	yes := true
	for _, tc := range []struct {
		name, yaml string
		want       HubSource
		wantName   string
	}{
		{"only the repo: main, the repo's name as key, five minutes",
			"  - hub: org/support-bot-lora\n",
			HubSource{Repo: "org/support-bot-lora", Revision: "main", Key: "support-bot-lora", Interval: DefaultHubInterval},
			"hf://org/support-bot-lora@main"},
		{"every key of the contract",
			"  - hub: org/support-bot-lora\n    revision: v3\n    subfolder: checkpoints/final/\n    key: support-bot\n    sidecar: {model: support-bot:v3, base: llama3.2:3b, verify: true}\n    interval: 30s\n",
			HubSource{Repo: "org/support-bot-lora", Revision: "v3", Subfolder: "checkpoints/final", Key: "support-bot",
				Sidecar: &Sidecar{Model: "support-bot:v3", Base: "llama3.2:3b", Verify: &yes}, Interval: 30 * time.Second},
			"hf://org/support-bot-lora@v3/checkpoints/final"},
		{"empty revision and subfolder mean the defaults",
			"  - hub: org/a\n    revision: \"\"\n    subfolder: \"\"\n",
			HubSource{Repo: "org/a", Revision: "main", Key: "a", Interval: DefaultHubInterval},
			"hf://org/a@main"},
		{"a repo name without org",
			"  - hub: gpt2.lora_v1\n",
			HubSource{Repo: "gpt2.lora_v1", Revision: "main", Key: "gpt2.lora_v1", Interval: DefaultHubInterval},
			"hf://gpt2.lora_v1@main"},
	} {
		c, err := ParseConfig([]byte("drop_dir: /d\nsources:\n"+tc.yaml), configFile)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		s := c.Sources[0]
		if s.Kind != SourceHub || s.Hub == nil || s.Line != 3 || s.Interval() != tc.want.Interval {
			t.Errorf("%s: %+v", tc.name, s)
			continue
		}
		if !reflect.DeepEqual(*s.Hub, tc.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, *s.Hub, tc.want)
		}
		if s.Name() != tc.wantName {
			t.Errorf("%s: name %q, want %q", tc.name, s.Name(), tc.wantName)
		}
	}
}

func TestSources_BadHubEntriesNameTheLineAndTheFix(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"  - hub:\n", "config.yaml:3: hub has no value; write hub: org/name"},
		{"  - hub: org/a/b\n", `config.yaml:3: hub: hub repo "org/a/b" is not a repo name; write it as org/name`},
		{"  - hub: ../etc\n", "is not a repo name"},
		{"  - hub: org/a\n    branch: dev\n", `config.yaml:4: unknown key "branch" in a hub source; known keys are hub, revision, subfolder, key, sidecar, interval`},
		{"  - hub: org/a\n    revision: a b\n", `config.yaml:4: revision: "a b" is not a branch, tag or commit`},
		{"  - hub: org/a\n    subfolder: ../x\n", `config.yaml:4: subfolder: "../x" leaves the repo`},
		{"  - hub: org/a\n    subfolder: /x\n", "leaves the repo"},
		{"  - hub: org/a\n    key: .hidden\n", `config.yaml:4: key: ".hidden" is not a drop_dir folder name`},
		{"  - hub: org/a\n    key: a/b\n", "is not a drop_dir folder name"},
		{"  - hub: org/a\n    sidecar: llama3\n", "config.yaml:4: sidecar must be a mapping"},
		{"  - hub: org/a\n    sidecar: {modle: x}\n", `config.yaml:4: unknown key "modle" in sidecar`},
		{"  - hub: org/a\n    sidecar: {strategy: fast}\n", "config.yaml:4: sidecar.strategy"},
		{"  - hub: org/a\n    interval: 0s\n", "config.yaml:4: interval must be more than 0"},
		{"  - hub: org/a\n    interval: 5\n", "5 has no unit"},
		{"  - hub: org/a\n  - hub: org/a\n    key: b\n", "config.yaml:4: source hf://org/a@main is listed twice (first on line 3)"},
		{"  - hub: org/a\n  - hub: other/a\n", "config.yaml:4: hub source hf://other/a@main would mirror into folder a, as the source on line 3 does; set key: on one of them"},
		{"  - hub: org/a\n    s3: s3://b/\n", "has both"},
	} {
		_, err := ParseConfig([]byte("drop_dir: /d\nsources:\n"+tc.yaml), "/etc/adapterd/config.yaml")
		if err == nil {
			t.Errorf("%q: no error, want %q", tc.yaml, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q:\n got %s\nwant %s", tc.yaml, err, tc.want)
		}
	}
}

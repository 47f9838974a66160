package daemon_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/adapterd/adapterd/internal/daemon"
	"github.com/adapterd/adapterd/internal/hub/hubtest"
	"github.com/adapterd/adapterd/internal/layout"
	"github.com/adapterd/adapterd/internal/ollamatest"
	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/status"
)

// runOnce is `adapterd run --once` in-process.
func runOnce(t *testing.T, cfg *spec.Config) (bool, adapters) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ok, list, err := daemon.RunOnce(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ok, adapters(list)
}

// adapters are the statuses after a run.
type adapters []status.Status

func (a adapters) Adapters() []status.Status { return a }

func onceConfig(t *testing.T, s *ollamatest.Server) *spec.Config {
	root := t.TempDir()
	cfg := spec.DefaultConfig(filepath.Join(root, "drop"))
	cfg.StateDir = filepath.Join(root, "state")
	cfg.Ollama.Host = s.URL.String()
	cfg.Settle = 200 * time.Millisecond
	cfg.Defaults.Base = baseModel
	os.MkdirAll(cfg.DropDir, 0o755)
	return cfg
}

func writeFolder(t *testing.T, cfg *spec.Config, key string, write func(string) error) {
	t.Helper()
	dir := filepath.Join(cfg.DropDir, key)
	os.MkdirAll(dir, 0o755)
	if err := write(dir); err != nil {
		t.Fatal(err)
	}
}

func TestRunOnce(t *testing.T) {
	s := bed(t, ollamatest.V024)
	t.Run("all ready exits 0", func(t *testing.T) {
		cfg := onceConfig(t, s)
		writeFolder(t, cfg, "once-a", ggufLoRA(2001, "model: once-a\n"))
		writeFolder(t, cfg, "once-b", peft(2002, "model: once-b\n"))
		ok, rec := runOnce(t, cfg)
		if !ok {
			t.Fatalf("not all ready: %+v", rec.Adapters())
		}
		for _, m := range []string{"once-a", "once-b"} {
			if !exists(s, m) {
				t.Errorf("%s not created", m)
			}
		}
		// A second --once finds nothing to do.
		mark := s.Mark()
		if ok, _ := runOnce(t, cfg); !ok {
			t.Error("second run not all ready")
		}
		if n := s.Count(mark, "POST", "/api/create"); n != 0 {
			t.Errorf("second --once made %d creates", n)
		}
	})
	t.Run("one bad folder exits 1 and does not block the others", func(t *testing.T) {
		cfg := onceConfig(t, s)
		writeFolder(t, cfg, "once-good", ggufLoRA(2003, "model: once-good\n"))
		writeFolder(t, cfg, "once-bad", peft(2004, "model: once-bad\nbogus: 1\n"))
		ok, rec := runOnce(t, cfg)
		if ok {
			t.Fatal("--once reported all ready with an invalid folder")
		}
		states := map[string]status.State{}
		for _, st := range rec.Adapters() {
			states[st.Key] = st.State
		}
		if states["once-good"] != status.Ready || states["once-bad"] != status.Invalid {
			t.Errorf("states %v", states)
		}
	})
	t.Run("ready_file gates a folder", func(t *testing.T) {
		cfg := onceConfig(t, s)
		cfg.ReadyFile = "READY"
		writeFolder(t, cfg, "gated", ggufLoRA(2005, "model: gated-bot\n"))
		if ok, _ := runOnce(t, cfg); ok || exists(s, "gated-bot") {
			t.Fatal("created before READY exists")
		}
		os.WriteFile(filepath.Join(cfg.DropDir, "gated", "READY"), nil, 0o644)
		if ok, rec := runOnce(t, cfg); !ok || !exists(s, "gated-bot") {
			t.Fatalf("not created after READY: %+v", rec.Adapters())
		}
	})
}

// run --once mirrors the sources first, so a folder a source offers
// becomes a ready model in the same run, as the daemon would make it. The
// source is a hub repo on the fake hub (hubtest), which needs no binary.
func TestRunOnceMirrorsTheSources(t *testing.T) {
	s := bed(t, ollamatest.V024)
	hs := hubtest.New(t)
	hubEnv(t, hs)
	dir := t.TempDir()
	if err := peft(2006, "")(dir); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, n := range []string{layout.PEFTConfig, layout.PEFTWeights} {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		files[n] = b
	}
	hs.Commit("org/once-lora", "main", files)
	cfg := onceConfig(t, s)
	cfg.Sources = []spec.Source{{Kind: spec.SourceHub, Hub: &spec.HubSource{
		Repo: "org/once-lora", Revision: "main", Key: "once-hub", Interval: time.Hour,
		Sidecar: &spec.Sidecar{Model: "once-hub:v1"},
	}}}
	ok, list := runOnce(t, cfg)
	if !ok || len(list) != 1 || list[0].Key != "once-hub" || list[0].State != status.Ready {
		t.Fatalf("after --once: ok %v, adapters %+v", ok, list)
	}
	if !exists(s, "once-hub:v1") {
		t.Error("the mirrored folder's model was not created")
	}
}

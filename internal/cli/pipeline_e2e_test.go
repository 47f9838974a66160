package cli

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ollama/ollama/api"

	"github.com/adapterd/adapterd/internal/ingest"
	"github.com/adapterd/adapterd/internal/ollamatest"
	"github.com/adapterd/adapterd/internal/status"
	"github.com/adapterd/adapterd/internal/testfixture"
)

// importTiny makes the tiny base available on any server.
func importTiny(t *testing.T, s *ollamatest.Server, name string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tiny.gguf")
	if err := testfixture.TinyLlama().WriteGGUF(path); err != nil {
		t.Fatal(err)
	}
	if err := s.ImportGGUF(context.Background(), name, path); err != nil {
		t.Fatal(err)
	}
}

func modelDigest(t *testing.T, s *ollamatest.Server, name string) string {
	t.Helper()
	l, err := s.Client.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range l.Models {
		if m.Name == name || m.Name == name+":latest" {
			return m.Digest
		}
	}
	return ""
}

// The one-shot create and the daemon resolve a folder the same way: the
// same config, folder and flags (as sidecar keys) give the same model, with
// the same Ollama digest and the same input digest. Each command reads the
// config's defaults and strategy, and the folder's own adapter.yaml.
func TestCreateMakesWhatTheDaemonMakes(t *testing.T) {
	for _, tc := range []struct {
		version, strategy, want string
	}{
		{ollamatest.V024, "auto", "native"},
		{ollamatest.V024, "merge", "merge"},
		{ollamatest.V034, "auto", "merge"},
	} {
		t.Run(tc.version+"-"+tc.strategy, func(t *testing.T) {
			s := ollamatest.Get(t, tc.version)
			base := "pipe-base-" + tc.strategy
			importTiny(t, s, base)
			model := "pipe-" + strings.ReplaceAll(tc.version, ".", "") + "-" + tc.strategy
			root := t.TempDir()
			drop := mkdir(t, filepath.Join(root, "drop"))
			config := filepath.Join(root, "adapterd.yaml")
			cfgText := "drop_dir: " + drop + "\nstate_dir: " + filepath.Join(root, "state") + "\nlisten: \"\"\nsettle: 0s\nstrategy: " + tc.strategy +
				"\nollama: {host: \"" + s.URL.String() + "\"}\ndefaults: {base: " + base + ", system: from the config, parameters: {temperature: 0.4}}\n"
			if err := os.WriteFile(config, []byte(cfgText), 0o644); err != nil {
				t.Fatal(err)
			}
			// The folder for create: its own adapter.yaml sets num_ctx; the
			// flags add top_k and a message.
			src := mkdir(t, filepath.Join(root, "src", "pipe"))
			if err := peftFolder(701)(src); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(src, "adapter.yaml"), []byte("parameters: {num_ctx: 64}\n"), 0o644)

			// --dry-run creates nothing and says why the strategy.
			stdout, stderr, code := runCLI(t, nil, "create", "--config", config, "--adapter", src, "--name", model,
				"--param", "top_k=5", "--message", "user=hi", "--dry-run", "--json")
			if code != 0 {
				t.Fatalf("dry run: exit %d, %s", code, stderr)
			}
			var plan ingest.OnceResult
			if err := json.Unmarshal([]byte(stdout), &plan); err != nil {
				t.Fatalf("dry run JSON: %v\n%s", err, stdout)
			}
			if string(plan.Strategy) != tc.want || plan.StrategyReason == "" || len(plan.Files) == 0 || plan.InputDigest == "" {
				t.Errorf("dry run plan %+v", plan)
			}
			if modelExists(t, s, model) {
				t.Fatal("the dry run created the model")
			}

			stdout, stderr, code = runCLI(t, nil, "create", "--config", config, "--adapter", src, "--name", model,
				"--param", "top_k=5", "--message", "user=hi", "--json")
			if code != 0 {
				t.Fatalf("create: exit %d, %s", code, stderr)
			}
			var got ingest.OnceResult
			if err := json.Unmarshal([]byte(stdout), &got); err != nil {
				t.Fatalf("create JSON: %v\n%s", err, stdout)
			}
			if string(got.Strategy) != tc.want || got.Digest == "" || got.BaseDigest == "" || got.InputDigest != plan.InputDigest {
				t.Errorf("create result %+v (plan input %s)", got, plan.InputDigest)
			}
			if d := modelDigest(t, s, model); d != got.Digest {
				t.Errorf("--json digest %s, Ollama has %s", got.Digest, d)
			}
			sh := showModel(t, s, model)
			if sh.System != "from the config" {
				t.Errorf("system %q: the config's default was not applied", sh.System)
			}
			for _, p := range []string{"num_ctx", "top_k", "temperature"} {
				if !strings.Contains(sh.Parameters, p) {
					t.Errorf("parameter %s missing: %q", p, sh.Parameters)
				}
			}
			if err := s.Client.Delete(context.Background(), &api.DeleteRequest{Model: model}); err != nil {
				t.Fatal(err)
			}

			// The daemon, on the same files with the flags written as
			// sidecar keys.
			dir := mkdir(t, filepath.Join(drop, "pipe"))
			if err := peftFolder(701)(dir); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(dir, "adapter.yaml"), []byte("model: "+model+"\nparameters: {num_ctx: 64, top_k: 5}\nmessages: [{role: user, content: hi}]\n"), 0o644)
			if _, stderr, code := runCLI(t, nil, "run", "--once", "--config", config); code != 0 {
				t.Fatalf("run --once: exit %d, %s", code, stderr)
			}
			var st status.Status
			b, _ := os.ReadFile(filepath.Join(dir, status.FileName))
			json.Unmarshal(b, &st)
			if st.State != status.Ready || st.Digest != got.InputDigest || st.Strategy != tc.want {
				t.Errorf("daemon status %+v, want ready with input digest %s", st, got.InputDigest)
			}
			if d := modelDigest(t, s, model); d != got.Digest {
				t.Errorf("the daemon's model has digest %s, create's had %s", d, got.Digest)
			}
		})
	}
}

// --out-modelfile is written only once the model exists, and `ollama
// create -f` on it rebuilds the same model: the same digest.
func TestOutModelfileRebuildsTheModel(t *testing.T) {
	s := bed(t)
	for _, strategy := range []string{"native", "merge"} {
		t.Run(strategy, func(t *testing.T) {
			dir := mkdir(t, filepath.Join(t.TempDir(), "rebuild"))
			if err := peftFolder(711)(dir); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "Modelfile")
			model := "rebuild-" + strategy
			_, stderr, code := runCLI(t, []string{"OLLAMA_HOST=" + s.URL.String()}, "create", "--adapter", dir, "--base", baseModel,
				"--name", model, "--strategy", strategy, "--system", "be brief", "--param", "stop=<|end|>", "--out-modelfile", out)
			if code != 0 {
				t.Fatalf("create: exit %d, %s", code, stderr)
			}
			bin, err := ollamatest.Binary(s.Version)
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, "create", model+"-again", "-f", out)
			cmd.Env = append(os.Environ(), "OLLAMA_HOST="+s.URL.Host)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("ollama create -f: %v\n%s", err, b)
			}
			if a, b := modelDigest(t, s, model), modelDigest(t, s, model+"-again"); a == "" || a != b {
				t.Errorf("adapterd's model %s, rebuilt from the Modelfile %s", a, b)
			}
		})
	}

	// A failed create leaves no Modelfile behind.
	dir := mkdir(t, filepath.Join(t.TempDir(), "nobase"))
	if err := peftFolder(712)(dir); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "Modelfile")
	_, _, code := runCLI(t, []string{"OLLAMA_HOST=" + s.URL.String()}, "create", "--adapter", dir, "--base", "no-such-base", "--name", "x", "--out-modelfile", out)
	if code != ingest.ExitBaseMissing {
		t.Errorf("missing base: exit %d, want %d", code, ingest.ExitBaseMissing)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a failed create wrote the Modelfile")
	}
}

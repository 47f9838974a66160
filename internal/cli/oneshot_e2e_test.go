package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ollama/ollama/parser"
)

// modelfileCommands parses a Modelfile with Ollama's own parser.
func modelfileCommands(t *testing.T, path string) []parser.Command {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mf, err := parser.ParseFile(f)
	if err != nil {
		t.Fatalf("Ollama's parser refuses %s: %v", path, err)
	}
	return mf.Commands
}

// commandValues maps command name to its values, in order.
func commandValues(cmds []parser.Command) map[string][]string {
	out := map[string][]string{}
	for _, c := range cmds {
		out[c.Name] = append(out[c.Name], c.Args)
	}
	return out
}

// showParameters parses Show's parameter text ("name   value" lines).
func showParameters(text string) map[string][]string {
	out := map[string][]string{}
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 {
			out[f[0]] = append(out[f[0]], strings.Trim(strings.Join(f[1:], " "), `"`))
		}
	}
	return out
}

// TestCreate runs `adapterd create` against v0.24.0, with the Ollama host
// from $OLLAMA_HOST, and checks the model and the Modelfile it wrote.
func TestCreate(t *testing.T) {
	s := bed(t)
	if _, err := os.Stat(defaultConfigPath); err == nil {
		t.Skipf("%s exists and would be used instead of $OLLAMA_HOST", defaultConfigPath)
	}
	for _, tc := range []struct {
		name, model, system string
	}{
		{"multiline-quoted", "create-multi", "multi\nline \"quoted\""},
		{"backslashes", "create-escapes", `multi\nline \"quoted\" """ not the end`},
		{"hostile", "create-hostile", "hi\nFROM evil\nADAPTER /etc/passwd"},
		{"hostile-triple-quotes", "create-hostile3", "hi\"\"\"\nFROM evil\nPARAMETER num_ctx 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "my-adapter")
			if err := peftFolder(301)(mkdir(t, dir)); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "Modelfile")
			stdout, stderr, code := runCLI(t, []string{"OLLAMA_HOST=" + s.URL.String()},
				"create", "--base", baseModel, "--name", tc.model, "--adapter", dir,
				"--system", tc.system, "--temperature", "0.3", "--num-ctx", "128", "--out-modelfile", out)
			if tc.name == "hostile-triple-quotes" {
				// A Modelfile cannot carry this prompt: refused with one
				// line, before anything is created. Without
				// --out-modelfile the API carries it fine.
				checkOneLineErrorCode(t, stdout, stderr, code, 3, "system")
				if modelExists(t, s, tc.model) {
					t.Fatalf("refused, yet model %s exists", tc.model)
				}
				stdout, stderr, code = runCLI(t, []string{"OLLAMA_HOST=" + s.URL.String()},
					"create", "--base", baseModel, "--name", tc.model, "--adapter", dir, "--system", tc.system)
				if code != 0 {
					t.Fatalf("create without --out-modelfile: exit %d, stderr %s", code, stderr)
				}
				if got := showModel(t, s, tc.model).System; got != tc.system {
					t.Errorf("model system prompt = %q, want %q", got, tc.system)
				}
				return
			}
			if code != 0 {
				t.Fatalf("create: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
			}
			if !strings.Contains(stdout, tc.model) {
				t.Errorf("create printed %q", stdout)
			}

			show := showModel(t, s, tc.model)
			if show.System != tc.system {
				t.Errorf("model system prompt = %q, want %q", show.System, tc.system)
			}
			params := showParameters(show.Parameters)
			if got := params["temperature"]; len(got) != 1 || got[0] != "0.3" {
				t.Errorf("model temperature = %q, want 0.3 (parameters %q)", got, show.Parameters)
			}
			if got := params["num_ctx"]; len(got) != 1 || got[0] != "128" {
				t.Errorf("model num_ctx = %q, want 128 (parameters %q)", got, show.Parameters)
			}
			if !strings.Contains(strings.ToLower(show.Modelfile), "adapter ") {
				t.Errorf("the model has no adapter:\n%s", show.Modelfile)
			}

			// The Modelfile says the same, and nothing more, to Ollama's
			// own parser: one FROM, one ADAPTER (the GGUF LoRA adapterd
			// converted and uploaded, kept beside it), one SYSTEM.
			got := commandValues(modelfileCommands(t, out))
			if _, err := os.Stat(out + ".gguf"); err != nil {
				t.Errorf("the adapter the Modelfile names was not written: %v", err)
			}
			want := map[string][]string{
				"model":       {baseModel},
				"adapter":     {out + ".gguf"},
				"system":      {tc.system},
				"temperature": {"0.3"},
				"num_ctx":     {"128"},
			}
			if len(got) != len(want) {
				t.Errorf("Modelfile commands %q, want exactly %q", got, want)
			}
			for k, v := range want {
				if strings.Join(got[k], "\x00") != strings.Join(v, "\x00") {
					t.Errorf("Modelfile %s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

// TestCreateErrors: bad input is one line and exit 3, a usage error exit
// 2 (docs/pipelines.md).
func TestCreateErrors(t *testing.T) {
	empty := mkdir(t, filepath.Join(t.TempDir(), "empty"))
	stdout, stderr, code := runCLI(t, []string{"OLLAMA_HOST=http://127.0.0.1:1"},
		"create", "--base", baseModel, "--name", "x", "--adapter", empty)
	checkOneLineErrorCode(t, stdout, stderr, code, 3, empty)

	_, stderr, code = runCLI(t, nil, "create", "--base", baseModel, "--name", "x")
	if code != 2 || !strings.Contains(stderr, "--adapter") {
		t.Errorf("create without --adapter: exit %d, stderr %q; want usage error (2)", code, stderr)
	}
	_, stderr, code = runCLI(t, nil, "create", "--base", baseModel, "--name", "x", "--adapter", empty, "--num-ctx", "1.5")
	if code != 2 || !strings.Contains(stderr, "num-ctx") {
		t.Errorf("create --num-ctx 1.5: exit %d, stderr %q; want usage error (2)", code, stderr)
	}
}

func mkdir(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestCheck runs `adapterd check` on good and bad folders against v0.24.0.
func TestCheck(t *testing.T) {
	s := bed(t)
	st := newSetup(t, s.URL.String())
	good := st.dropFolder(t, "good-peft", peftFolder(401))
	goodGGUF := st.dropFolder(t, "good-gguf", ggufFolder(402))
	badKey := st.dropFolder(t, "bad-key", func(dir string) error {
		if err := peftFolder(403)(dir); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, "adapter.yaml"), []byte("model: bad-key\nsytem: typo\n"), 0o644)
	})
	noFiles := st.dropFolder(t, "no-files", func(dir string) error {
		return os.WriteFile(filepath.Join(dir, "README.md"), []byte("hi"), 0o644)
	})
	noBase := st.dropFolder(t, "no-base", func(dir string) error {
		if err := ggufFolder(404)(dir); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, "adapter.yaml"), []byte("base: not-pulled:7b\n"), 0o644)
	})

	// Good folders only: exit 0, one ok line each, nothing created.
	mark := s.Mark()
	stdout, stderr, code := runCLI(t, nil, "check", "--config", st.config, good, goodGGUF)
	if code != 0 || stderr != "" {
		t.Fatalf("check on good folders: exit %d, stderr %q, stdout %q", code, stderr, stdout)
	}
	lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], good+": ok") || !strings.HasPrefix(lines[1], goodGGUF+": ok") {
		t.Errorf("check output:\n%s", stdout)
	}
	for _, path := range []string{"/api/create", "/api/blobs", "/api/copy", "/api/pull"} {
		if n := s.Count(mark, "POST", path); n != 0 {
			t.Errorf("check made %d POST %s requests to Ollama; it must create nothing", n, path)
		}
	}

	// Mixed: exit 1, one line per folder, each problem naming its file.
	stdout, stderr, code = runCLI(t, nil, "check", "--config", st.config, good, badKey, noFiles, noBase)
	if code != 1 {
		t.Errorf("check with problems: exit %d, want 1", code)
	}
	lines = strings.Split(strings.TrimRight(stdout, "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("check printed %d lines, want 4 (one per folder):\n%s", len(lines), stdout)
	}
	wants := []struct{ prefix, mention string }{
		{good + ": ok", ""},
		{filepath.Join(badKey, "adapter.yaml") + ":2:", "sytem"},
		{noFiles, "no adapter found"},
		{filepath.Join(noBase, "adapter.yaml"), "not-pulled:7b"},
	}
	for i, w := range wants {
		if !strings.HasPrefix(lines[i], w.prefix) || !strings.Contains(lines[i], w.mention) {
			t.Errorf("line %d = %q, want it to start with %q and mention %q", i+1, lines[i], w.prefix, w.mention)
		}
	}

	// Ollama away: the files are still checked, and stderr says the base
	// models were not.
	st.host = "http://127.0.0.1:1"
	st.writeConfig(t, "")
	stdout, stderr, code = runCLI(t, nil, "check", "--config", st.config, good, badKey)
	if code != 1 || !strings.Contains(stderr, "not reachable") {
		t.Errorf("offline check: exit %d, stderr %q", code, stderr)
	}
	if lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n"); len(lines) != 2 || !strings.Contains(lines[1], "sytem") {
		t.Errorf("offline check output:\n%s", stdout)
	}
	stdout, _, code = runCLI(t, nil, "check", "--config", st.config, good)
	if code != 0 {
		t.Errorf("offline check of a good folder: exit %d, stdout %q", code, stdout)
	}

	// No folder: usage error.
	if _, _, code := runCLI(t, nil, "check", "--config", st.config); code != 2 {
		t.Errorf("check without folders: exit %d, want 2", code)
	}
}

// TestModelfile prints the Modelfile for folders; Ollama's parser reads it
// back to the sidecar's values.
func TestModelfile(t *testing.T) {
	root := t.TempDir()
	drop := mkdir(t, filepath.Join(root, "drop"))
	config := filepath.Join(root, "adapterd.yaml")
	if err := os.WriteFile(config, []byte("drop_dir: "+drop+"\ndefaults: {base: "+baseModel+", parameters: {temperature: 0.5}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	peft := mkdir(t, filepath.Join(drop, "peft"))
	if err := peftFolder(501)(peft); err != nil {
		t.Fatal(err)
	}
	gguf := mkdir(t, filepath.Join(drop, "gguf"))
	if err := ggufFolder(502)(gguf); err != nil {
		t.Fatal(err)
	}
	sidecar := "model: mf-bot:v1\nstrategy: native\nsystem: |\n  two\n  lines \"quoted\"\nparameters:\n  num_ctx: 256\n  stop: [\"<|a|>\", \"<|b|>\"]\nmessages:\n  - {role: user, content: hi}\n  - {role: assistant, content: hello}\n"
	if err := os.WriteFile(filepath.Join(gguf, "adapter.yaml"), []byte(sidecar), 0o644); err != nil {
		t.Fatal(err)
	}

	// A GGUF LoRA, native: the Modelfile names the file adapterd uploads.
	stdout, stderr, code := runCLI(t, nil, "modelfile", "--config", config, gguf)
	if code != 0 {
		t.Fatalf("modelfile: exit %d, stderr %q", code, stderr)
	}
	path := filepath.Join(root, "Modelfile")
	os.WriteFile(path, []byte(stdout), 0o644)
	got := commandValues(modelfileCommands(t, path))
	want := map[string][]string{
		"model":       {baseModel},
		"adapter":     {filepath.Join(gguf, "lora.gguf")},
		"system":      {"two\nlines \"quoted\"\n"},
		"temperature": {"0.5"},
		"num_ctx":     {"256"},
		"stop":        {"<|a|>", "<|b|>"},
		"message":     {"user: hi", "assistant: hello"},
	}
	for k, v := range want {
		if strings.Join(got[k], "\x00") != strings.Join(v, "\x00") {
			t.Errorf("Modelfile %s = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("Modelfile commands %q, want %q", got, want)
	}

	// PEFT files have no Modelfile that rebuilds adapterd's model:
	// Ollama's own conversion gets llama q/k wrong. Refused, with the way.
	stdout, stderr, code = runCLI(t, nil, "modelfile", "--config", config, peft)
	checkOneLineErrorCode(t, stdout, stderr, code, 3, "PEFT", "--out-modelfile")

	// A bad folder: one line naming the file, exit 1.
	if err := os.WriteFile(filepath.Join(gguf, "adapter.yaml"), []byte("parameters:\n  temperature: hot\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code = runCLI(t, nil, "modelfile", "--config", config, gguf)
	checkOneLineError(t, stdout, stderr, code, filepath.Join(gguf, "adapter.yaml")+":2:", "temperature")

	if _, _, code := runCLI(t, nil, "modelfile", "--config", config, peft, gguf); code != 2 {
		t.Errorf("modelfile with two folders: exit %d, want 2", code)
	}
}

// TestStatusWithoutEndpoint: a config with listen: "" still has the
// control socket; with no daemon there, status says so in one line naming
// api.socket (exit 1), not with a usage text.
func TestStatusWithoutEndpoint(t *testing.T) {
	root := t.TempDir()
	config := filepath.Join(root, "adapterd.yaml")
	if err := os.WriteFile(config, []byte("drop_dir: "+root+"/drop\nstate_dir: "+root+"/state\nlisten: \"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runCLI(t, nil, "status", "--config", config)
	checkOneLineError(t, stdout, stderr, code, "config api.socket: "+root+"/state/adapterd.sock", "is the daemon running?")
}

package cli

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adapterd/adapterd/internal/status"
	"github.com/adapterd/adapterd/internal/testfixture"
)

// `check`, `create --dry-run` and the daemon give the same verdict on the
// same folders, good and bad, on a real v0.24.0 server: they make one
// decision. A folder `check` passes is one the daemon makes ready; one it
// refuses, the daemon marks invalid with the same first line, and
// `create --dry-run` refuses with exit status 3 and that line too.
func TestCheckCreateAndTheDaemonAgree(t *testing.T) {
	s := bed(t)
	importArch := func(b testfixture.Base, name string) {
		path := filepath.Join(t.TempDir(), "base.gguf")
		if err := testfixture.WriteArchGGUF(b, path); err != nil {
			t.Fatal(err)
		}
		if err := s.ImportGGUF(context.Background(), name, path); err != nil {
			t.Fatal(err)
		}
	}
	qwen3, tied := testfixture.TinyQwen3(), testfixture.TinyLlama3()
	importArch(qwen3, "verdict-qwen3:base")
	importArch(tied, "verdict-tied:base")
	with := func(a testfixture.LoRA, yaml string) func(string) error {
		return func(dir string) error {
			if err := a.WritePEFT(dir); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, "adapter.yaml"), []byte(yaml), 0o644)
		}
	}
	headTargets := []string{"q_proj", "v_proj", testfixture.LMHead}
	cases := []struct {
		key   string
		write func(string) error
		ok    bool
		want  string // in the refusal
	}{
		{"v-good-peft", with(peftLoRA(1901), "model: v-good-peft\n"), true, ""},
		{"v-good-gguf", func(dir string) error {
			if err := ggufFolder(1902)(dir); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, "adapter.yaml"), []byte("model: v-good-gguf\n"), 0o644)
		}, true, ""},
		{"v-qwen3-auto", with(testfixture.LoRA{Base: qwen3, Seed: 1903}, "model: v-qwen3-auto\nbase: verdict-qwen3:base\n"), true, ""},
		{"v-template", with(peftLoRA(1904), "model: v-template\ntemplate: \"{{ .Prompt\"\n"), false, "template: Ollama cannot parse it"},
		{"v-nan", func(dir string) error {
			if err := ggufFolder(1905)(dir); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, "adapter.yaml"), []byte("model: v-nan\n"), 0o644); err != nil {
				return err
			}
			return testfixture.Poison(filepath.Join(dir, "lora.gguf"), "blk.0.attn_q.weight.lora_a", float32(math.NaN()))
		}, false, "NaN or Inf"},
		{"v-tied-native", with(testfixture.LoRA{Base: tied, Seed: 1906, Targets: headTargets},
			"model: v-tied-native\nbase: verdict-tied:base\nstrategy: native\n"), false, "ties its output projection"},
		{"v-qwen3-native", with(testfixture.LoRA{Base: qwen3, Seed: 1907},
			"model: v-qwen3-native\nbase: verdict-qwen3:base\nstrategy: native\n"), false, "Go engine"},
		{"v-save-native", with(testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: 1908, Targets: []string{"v_proj"}, ModulesToSave: []string{"lm_head"}},
			"model: v-save-native\nstrategy: native\n"), false, "modules_to_save: lm_head"},
	}
	st := newSetup(t, s.URL.String())
	var dirs []string
	for _, c := range cases {
		dirs = append(dirs, st.dropFolder(t, c.key, c.write))
	}

	mark := s.Mark()
	stdout, stderr, code := runCLI(t, nil, append([]string{"check", "--config", st.config}, dirs...)...)
	if code != 1 {
		t.Errorf("check: exit %d, want 1; stderr %q", code, stderr)
	}
	checkSays := map[string]string{} // dir -> its first line
	for _, line := range strings.Split(strings.TrimRight(stdout, "\n"), "\n") {
		for _, dir := range dirs {
			if strings.HasPrefix(line, dir+"/") || strings.HasPrefix(line, dir+":") {
				if _, seen := checkSays[dir]; !seen {
					checkSays[dir] = line
				}
			}
		}
	}
	dryRun := map[string]string{}
	for i, c := range cases {
		_, stderr, code := runCLI(t, nil, "create", "--config", st.config, "--adapter", dirs[i], "--dry-run")
		if c.ok != (code == 0) || (!c.ok && code != 3) {
			t.Errorf("%s: create --dry-run exit %d; stderr %q", c.key, code, stderr)
		}
		dryRun[c.key] = strings.TrimPrefix(strings.TrimSpace(stderr), "adapterd: ")
	}
	if n := s.Count(mark, "POST", "/api/create"); n != 0 {
		t.Errorf("check and create --dry-run made %d creates", n)
	}

	p := startDaemon(t, st)
	for i, c := range cases {
		t.Run(c.key, func(t *testing.T) {
			line := checkSays[dirs[i]]
			if c.ok {
				if !strings.HasPrefix(line, dirs[i]+": ok") {
					t.Errorf("check: %q, want ok", line)
				}
				p.waitState(c.key, status.Ready)
				return
			}
			if strings.HasPrefix(line, dirs[i]+": ok") || !strings.Contains(line, c.want) {
				t.Errorf("check: %q, want a refusal saying %q", line, c.want)
			}
			daemon := p.waitState(c.key, status.Invalid).Error
			if daemon != line {
				t.Errorf("the daemon says %q, check says %q", daemon, line)
			}
			if dryRun[c.key] != line {
				t.Errorf("create --dry-run says %q, check says %q", dryRun[c.key], line)
			}
		})
	}
	p.stop()
	if t.Failed() {
		t.Logf("check output:\n%s", stdout)
	}
}

package cli

import (
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/adapterd/adapterd/internal/spec"
)

// TestDropSidecarIsWhatCreateWouldApply: the create flags given with
// fetch-adapter --drop become an adapter.yaml that the daemon reads back as
// exactly the sidecar layer create builds from the same flags.
func TestDropSidecarIsWhatCreateWouldApply(t *testing.T) {
	args := []string{"--base", "llama3.2:3b", "--name", "support-bot:v3", "--system", "Be brief.",
		"--template", "{{ .Prompt }}", "--strategy", "merge", "--quantize", "q4_K_M", "--verify",
		"--temperature", "0.5", "--num-ctx", "4096", "--param", "stop=<|eot|>", "--param", "stop=###",
		"--message", "user=hi", "--message", "assistant=hello", "--license", "MIT"}
	env := Env{Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" }}
	yml, err := sidecarFromFlags(args, env)
	if err != nil {
		t.Fatal(err)
	}
	got, err := spec.ParseSidecar(yml, "adapter.yaml")
	if err != nil {
		t.Fatalf("the written adapter.yaml does not parse: %v\n%s", err, yml)
	}
	fs := newFlags("create", env)
	var sf sidecarFlags
	sf.register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	want, err := sf.sidecar()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("adapter.yaml reads back as\n%+v\nwant create's layer\n%+v\n%s", got, want, yml)
	}

	for _, bad := range [][]string{{"--out-modelfile", "m"}, {"--dry-run"}, {"--name", "x", "extra"}} {
		_, err := sidecarFromFlags(bad, env)
		if err == nil || !strings.Contains(err.Error(), "takes only the sidecar flags") {
			t.Errorf("%q: err %v, want a refusal that lists the sidecar flags", bad, err)
		}
	}
}

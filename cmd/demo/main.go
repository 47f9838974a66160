// Command demo shows adapterd's main job on the real test bed: it starts an
// Ollama v0.24.0 test server, imports a tiny base model, runs the adapterd
// binary on a temporary drop dir, publishes a LoRA adapter folder into it,
// waits for the model to become ready, and generates with it.
//
// Run it through scripts/demo.sh, which builds the server and adapterd.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/adapterd/adapterd/internal/ollamatest"
	"github.com/adapterd/adapterd/internal/status"
	"github.com/adapterd/adapterd/internal/testfixture"
)

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	bin := flag.String("adapterd", "adapterd", "path of the adapterd binary")
	version := flag.String("ollama", ollamatest.V024, "test server version")
	flag.Parse()

	root, err := os.MkdirTemp("", "adapterd-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	step("starting Ollama v%s on a loopback port", *version)
	srv, err := ollamatest.Start(*version, filepath.Join(root, "ollama"))
	if err != nil {
		return err
	}
	defer srv.Stop()

	step("importing a tiny llama base model as tiny-llama:base")
	base := filepath.Join(root, "tiny.gguf")
	if err := testfixture.TinyLlama().WriteGGUF(base); err != nil {
		return err
	}
	if err := srv.ImportGGUF(ctx, "tiny-llama:base", base); err != nil {
		return err
	}

	drop := filepath.Join(root, "drop")
	os.MkdirAll(drop, 0o755)
	cfgPath := filepath.Join(root, "config.yaml")
	// state_dir beside the drop dir, in the demo's own temp dir: the
	// default (/var/lib/adapterd as root) belongs to an installed daemon.
	state := filepath.Join(root, "state")
	cfg := fmt.Sprintf("drop_dir: %s\nstate_dir: %s\nollama: {host: %s}\nsettle: 1s\nlisten: \"127.0.0.1:0\"\ndefaults: {base: tiny-llama:base}\n", drop, state, srv.URL)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return err
	}
	step("running: %s run --config %s", *bin, cfgPath)
	cmd := exec.CommandContext(ctx, *bin, "run", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}()

	step("publishing drop/support-bot (PEFT adapter + adapter.yaml) with an atomic rename")
	tmp := filepath.Join(drop, ".support-bot.partial")
	a := testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: 2026, Targets: []string{"o_proj", "v_proj"}}
	if err := a.WritePEFT(tmp); err != nil {
		return err
	}
	sidecar := "model: support-bot:v1\nsystem: You answer briefly.\nparameters: {temperature: 0.2, num_ctx: 256}\n"
	if err := os.WriteFile(filepath.Join(tmp, "adapter.yaml"), []byte(sidecar), 0o644); err != nil {
		return err
	}
	start := time.Now()
	if err := os.Rename(tmp, filepath.Join(drop, "support-bot")); err != nil {
		return err
	}
	st, err := waitReady(filepath.Join(drop, "support-bot", status.FileName), 2*time.Minute)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(st)
	step("ready after %.1fs (settle 1s included): %s", time.Since(start).Seconds(), b)

	for _, model := range []string{"tiny-llama:base", "support-bot:v1"} {
		out, err := srv.Greedy(ctx, model, "hello", 12)
		if err != nil {
			return err
		}
		step("%-16s greedy(\"hello\") = %q", model, out)
	}
	step("done: the adapter folder became an Ollama model that generates differently from its base")
	return nil
}

func waitReady(path string, timeout time.Duration) (status.Status, error) {
	deadline := time.Now().Add(timeout)
	var st status.Status
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &st) == nil {
			switch st.State {
			case status.Ready:
				return st, nil
			case status.Invalid, status.Conflict:
				return st, fmt.Errorf("adapter is %s: %s", st.State, st.Error)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return st, fmt.Errorf("not ready after %s (state %q, error %q)", timeout, st.State, st.Error)
}

func step(format string, args ...any) {
	fmt.Printf("demo: "+format+"\n", args...)
}

package lora_test

import (
	"io"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adapterd/adapterd/internal/lora"
	"github.com/adapterd/adapterd/internal/testfixture"
)

// check runs the checker over path in chunks of the given size.
func checkFinite(t *testing.T, a *lora.Adapter, path string, chunk int) error {
	t.Helper()
	fh, size, err := a.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	c, err := a.NewFiniteChecker(path, fh, size)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, chunk)
	if _, err := io.CopyBuffer(struct{ io.Writer }{c}, struct{ io.Reader }{fh}, buf); err != nil {
		t.Fatal(err)
	}
	return c.Err()
}

func TestFiniteChecker(t *testing.T) {
	for _, tc := range []struct {
		name, file, tensor string
		write              func(fx testfixture.LoRA, dir string) error
	}{
		{"gguf", "lora.gguf", "blk.1.attn_v.weight.lora_b", func(fx testfixture.LoRA, dir string) error { return fx.WriteGGUF(filepath.Join(dir, "lora.gguf")) }},
		{"peft", "adapter_model.safetensors", "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight", func(fx testfixture.LoRA, dir string) error { return fx.WritePEFT(dir) }},
	} {
		for _, v := range []float32{float32(math.NaN()), float32(math.Inf(-1))} {
			t.Run(tc.name, func(t *testing.T) {
				dir := t.TempDir()
				if err := tc.write(testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: 5}, dir); err != nil {
					t.Fatal(err)
				}
				path := filepath.Join(dir, tc.file)
				a, err := lora.Detect(dir)
				if err != nil {
					t.Fatal(err)
				}
				for _, chunk := range []int{1, 3, 4096} {
					if err := checkFinite(t, a, path, chunk); err != nil {
						t.Fatalf("clean file, chunk %d: %v", chunk, err)
					}
				}
				if err := testfixture.Poison(path, tc.tensor, v); err != nil {
					t.Fatal(err)
				}
				if a, err = lora.Detect(dir); err != nil {
					t.Fatal(err)
				}
				for _, chunk := range []int{1, 3, 4096} {
					err := checkFinite(t, a, path, chunk)
					if err == nil || !strings.Contains(err.Error(), tc.tensor) || !strings.Contains(err.Error(), "NaN or Inf") {
						t.Errorf("chunk %d: err = %v, want it to name %s", chunk, err, tc.tensor)
					}
				}
			})
		}
	}
}

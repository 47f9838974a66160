package lora_test

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/lora"
	"github.com/adapterd/adapterd/internal/quant"
	"github.com/adapterd/adapterd/internal/testfixture"
)

// writeBase writes b as an F32 GGUF in a temp dir and parses its header.
func writeBase(t testing.TB, b testfixture.Base) (string, *gguf.File) {
	t.Helper()
	path := filepath.Join(t.TempDir(), b.Arch+"-base.gguf")
	if err := b.WriteGGUF(path); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, f
}

func baseInfo(t testing.TB, f *gguf.File) lora.BaseInfo {
	t.Helper()
	bi, err := lora.BaseInfoFromGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	return bi
}

func rawTensor(t testing.TB, path string, f *gguf.File, name string) []byte {
	t.Helper()
	ti, ok := f.Tensor(name)
	if !ok {
		t.Fatalf("%s has no tensor %s", path, name)
	}
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	sec, err := f.Section(fh, ti)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(sec)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tensor64 reads a tensor as float64 through quant.Dequantize.
func tensor64(t testing.TB, path string, f *gguf.File, name string) []float64 {
	t.Helper()
	ti, _ := f.Tensor(name)
	v, err := quant.Dequantize(ti.Type, rawTensor(t, path, f, name), int(ti.Elements()))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// permute64 is the RoPE row permutation, written independently of
// lora.PermuteRows from numpy's reshape(n_head, 2, rows/n_head/2, cols)
// .swapaxes(1, 2): output row h·rows/n_head + 2j + s is input row
// h·rows/n_head + s·rows/n_head/2 + j.
func permute64(m []float64, rows, cols, nHead int) []float64 {
	out := make([]float64, len(m))
	per := rows / nHead
	for dst := 0; dst < rows; dst++ {
		h, r := dst/per, dst%per
		j, s := r/2, r%2
		src := h*per + s*per/2 + j
		copy(out[dst*cols:(dst+1)*cols], m[src*cols:(src+1)*cols])
	}
	return out
}

// refDelta is scale·B·A in float64, shape [out, in], with its rows permuted
// when heads > 0: the reference permutes the product, not B.
func refDelta(p testfixture.Pair, rank int, scale float64, heads int) []float64 {
	in, out := p.Module.In, p.Module.Out
	d := make([]float64, out*in)
	for o := 0; o < out; o++ {
		for i := 0; i < in; i++ {
			var s float64
			for k := 0; k < rank; k++ {
				s += float64(p.B[o*rank+k]) * float64(p.A[k*in+i])
			}
			d[o*in+i] = scale * s
		}
	}
	if heads > 0 {
		d = permute64(d, out, in, heads)
	}
	return d
}

// ropeHeads is which head count the reference permutes a module's output by.
func ropeHeads(b testfixture.Base, peft string) int {
	if b.Arch != "llama" {
		return 0
	}
	switch peft {
	case "q_proj":
		return b.Heads
	case "k_proj":
		return b.KVHeads
	}
	return 0
}

func targetName(p testfixture.Pair) string {
	return fmt.Sprintf("blk.%d.%s.weight", p.Layer, p.Module.GGUF)
}

// near reports the first index where got and want differ by more than
// rel·|want| + abs.
func near(got, want []float64, rel, abs float64) error {
	if len(got) != len(want) {
		return fmt.Errorf("length %d, want %d", len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(got[i] - want[i]); d > rel*math.Abs(want[i])+abs || math.IsNaN(got[i]) {
			return fmt.Errorf("element %d: got %.9g, want %.9g (diff %.3g)", i, got[i], want[i], d)
		}
	}
	return nil
}

// quantize encodes x (a whole number of blocks) as typ with ggml's own
// quantizers (package quant, which its tests hold bit-identical to ggml).
func quantize(typ gguf.TensorType, x []float32) []byte {
	b, err := quant.Quantize(typ, x)
	if err != nil {
		panic(err)
	}
	return b
}

// quantizeBase rewrites the F32 GGUF at src to dst with every 2-D weight
// whose rows fit typ's blocks stored as typ; everything else is copied.
func quantizeBase(t testing.TB, src string, typ gguf.TensorType) (string, *gguf.File) {
	t.Helper()
	f, err := gguf.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	ts := append([]gguf.Tensor(nil), f.Tensors...)
	quantized := make([]bool, len(ts))
	for i, ti := range ts {
		if len(ti.Shape) == 2 && ti.Shape[0]%typ.BlockSize() == 0 && strings.HasSuffix(ti.Name, ".weight") {
			ts[i].Type, quantized[i] = typ, true
		}
	}
	dst := strings.TrimSuffix(src, ".gguf") + "-" + typ.String() + ".gguf"
	var buf bytes.Buffer
	w, err := gguf.NewWriter(&buf, f.KV, ts)
	if err != nil {
		t.Fatal(err)
	}
	for i, ti := range f.Tensors {
		raw := rawTensor(t, src, f, ti.Name)
		if quantized[i] {
			v, err := quant.Dequantize(gguf.TypeF32, raw, int(ti.Elements()))
			if err != nil {
				t.Fatal(err)
			}
			raw = quantize(typ, v)
		}
		if err := w.WriteTensor(bytes.NewReader(raw)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	qf, err := gguf.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	return dst, qf
}

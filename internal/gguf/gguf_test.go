package gguf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
)

func sample(t testing.TB) []byte {
	t.Helper()
	kv := []KV{
		{"general.architecture", "llama"},
		{"general.type", "adapter"},
		{"adapter.lora.alpha", float32(8)},
		{"llama.block_count", uint32(2)},
		{"tokenizer.ggml.tokens", []string{"<unk>", "<s>"}},
		{"tokenizer.ggml.scores", []float32{0, -1}},
		{"tokenizer.ggml.token_type", []int32{2, 3}},
		{"x.i8", int8(-3)}, {"x.u64", uint64(1 << 40)}, {"x.f64", 2.5}, {"x.bool", true},
	}
	tensors := []Tensor{
		{Name: "blk.0.attn_q.weight.lora_a", Shape: []uint64{8, 2}, Type: TypeF32},
		{Name: "blk.0.attn_q.weight.lora_b", Shape: []uint64{2, 8}, Type: TypeF16},
		{Name: "q8", Shape: []uint64{32, 1}, Type: TypeQ8_0},
	}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, kv, tensors)
	if err != nil {
		t.Fatal(err)
	}
	for i, tt := range w.Tensors() {
		n, _ := tt.Bytes()
		if err := w.WriteTensor(bytes.NewReader(bytes.Repeat([]byte{byte(i + 1)}, int(n)))); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	b := sample(t)
	f, err := Read(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if f.Architecture() != "llama" || f.String("general.type") != "adapter" {
		t.Errorf("metadata lost: %+v", f.KV)
	}
	if a, ok := f.Float("adapter.lora.alpha"); !ok || a != 8 {
		t.Errorf("alpha = %v %v", a, ok)
	}
	if n, ok := f.Uint("llama.block_count"); !ok || n != 2 {
		t.Errorf("block_count = %v %v", n, ok)
	}
	if v, _ := f.Get("tokenizer.ggml.token_type"); !reflect.DeepEqual(v, []int32{2, 3}) {
		t.Errorf("token_type = %#v", v)
	}
	if v, _ := f.Get("x.i8"); v != int8(-3) {
		t.Errorf("x.i8 = %#v", v)
	}
	if len(f.Tensors) != 3 {
		t.Fatalf("tensors = %d", len(f.Tensors))
	}
	for i, tt := range f.Tensors {
		if tt.Offset%32 != 0 {
			t.Errorf("%s misaligned at %d", tt.Name, tt.Offset)
		}
		sec, err := f.Section(bytes.NewReader(b), tt)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(sec)
		n, _ := tt.Bytes()
		if !bytes.Equal(data, bytes.Repeat([]byte{byte(i + 1)}, int(n))) {
			t.Errorf("%s data differs", tt.Name)
		}
	}
	if q, _ := f.Tensor("q8"); q.Type != TypeQ8_0 {
		t.Errorf("q8 type %v", q.Type)
	}
}

func TestTruncatedIsReported(t *testing.T) {
	b := sample(t)
	f, err := Read(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	last := f.Tensors[len(f.Tensors)-1]
	n, _ := last.Bytes()
	dataEnd := int(f.DataOffset + last.Offset + n)
	for _, cut := range []int{3, 20, 100, len(b) - 40, dataEnd - 1} {
		_, err := Read(bytes.NewReader(b[:cut]), int64(cut))
		if err == nil {
			t.Errorf("cut at %d: no error", cut)
			continue
		}
		if cut > 4 && !errors.Is(err, ErrTruncated) {
			t.Errorf("cut at %d: %v is not ErrTruncated", cut, err)
		}
	}
}

func TestRejects(t *testing.T) {
	b := sample(t)
	bad := append([]byte("GGML"), b[4:]...)
	if _, err := Read(bytes.NewReader(bad), int64(len(bad))); !errors.Is(err, ErrNotGGUF) {
		t.Errorf("bad magic: %v", err)
	}
	if _, err := NewWriter(io.Discard, nil, []Tensor{{Name: "k", Shape: []uint64{10}, Type: TypeQ4_K}}); err == nil || !strings.Contains(err.Error(), "block size") {
		t.Errorf("Q4_K with 10 columns: %v", err)
	}
}

// FuzzRead reads b followed by hole zero bytes, up to 16 GiB: a sparse
// file, so the fuzzer can claim counts and lengths far beyond what fits in
// memory, as a hostile file on disk can.
func FuzzRead(f *testing.F) {
	f.Add(sample(f), uint64(0))
	f.Add([]byte("GGUF\x03\x00\x00\x00"), uint64(0))
	for _, hh := range hostileHeaders {
		h := hh.build()
		if b := h.contiguous(); b != nil {
			f.Add(b, uint64(hh.size)-uint64(len(b)))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte, hole uint64) {
		size := int64(len(b)) + int64(hole%(16<<30))
		file, err := Read(sparseReader{b}, size)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error: %q", err)
			}
			return
		}
		for _, tt := range file.Tensors {
			n, err := tt.Bytes()
			if err != nil || file.DataOffset+tt.Offset+n > uint64(size) {
				t.Fatalf("accepted tensor %q outside the file", tt.Name)
			}
		}
	})
}

// A tokenizer larger than any architecture adapterd merges into (262,144
// tokens as Gemma 3, 300,000 merges, more than Llama 3's 280,147) must fit
// the caps and the memory budget.
func TestLargeRealTokenizerIsRead(t *testing.T) {
	const nTokens, nMerges = 262144, 300000
	tokens := make([]string, nTokens)
	for i := range tokens {
		tokens[i] = fmt.Sprintf("tok%04x", i) // 7 bytes, about the average
	}
	merges := make([]string, nMerges)
	for i := range merges {
		merges[i] = fmt.Sprintf("m%05x m%04x", i, i%65536) // 12 bytes
	}
	kv := []KV{
		{"general.architecture", "llama"},
		{"tokenizer.ggml.tokens", tokens},
		{"tokenizer.ggml.merges", merges},
		{"tokenizer.ggml.scores", make([]float32, nTokens)},
		{"tokenizer.ggml.token_type", make([]int32, nTokens)},
		{"tokenizer.chat_template", strings.Repeat("{% if x %}", 10000)},
	}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, kv, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := Read(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := f.Get("tokenizer.ggml.merges"); !reflect.DeepEqual(v, merges) {
		t.Error("merges differ after reading")
	}
	if v, _ := f.Get("tokenizer.ggml.tokens"); !reflect.DeepEqual(v, tokens) {
		t.Error("tokens differ after reading")
	}
}

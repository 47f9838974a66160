package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func sample(t testing.TB) []byte {
	var buf bytes.Buffer
	err := Write(&buf, map[string]string{"format": "pt"}, []TensorData{
		{Name: "b.lora_A.weight", DType: "F32", Shape: []int64{2, 3}, Data: make([]byte, 24)},
		{Name: "a.lora_B.weight", DType: "BF16", Shape: []int64{3, 2}, Data: bytes.Repeat([]byte{7}, 12)},
	})
	if err != nil {
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
	if f.Metadata["format"] != "pt" || len(f.Tensors) != 2 || f.Tensors[0].Name != "a.lora_B.weight" {
		t.Fatalf("got %+v", f)
	}
	tb, ok := f.Tensor("a.lora_B.weight")
	if !ok || tb.DType != "BF16" || tb.Elements() != 6 {
		t.Fatalf("tensor = %+v", tb)
	}
	var got bytes.Buffer
	got.ReadFrom(f.Section(bytes.NewReader(b), tb))
	if !bytes.Equal(got.Bytes(), bytes.Repeat([]byte{7}, 12)) {
		t.Errorf("data = %v", got.Bytes())
	}
	if f.DataOffset%8 != 0 {
		t.Errorf("data offset %d not aligned", f.DataOffset)
	}
}

func TestIncompleteAndCorrupt(t *testing.T) {
	b := sample(t)
	tests := []struct {
		name      string
		data      []byte
		truncated bool
		want      string
	}{
		{"cut in data", b[:len(b)-1], true, "truncated"},
		{"cut in header", b[:20], true, "truncated"},
		{"empty", nil, true, "too short"},
		{"trailing bytes", append(append([]byte{}, b...), 0), false, "after the last tensor"},
		{"not json", append([]byte{8, 0, 0, 0, 0, 0, 0, 0}, "notjson!"...), false, "not a JSON object"},
		{"huge header", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '{', '}'}, false, "not plausible"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Read(bytes.NewReader(tt.data), int64(len(tt.data)))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if errors.Is(err, ErrTruncated) != tt.truncated {
				t.Errorf("ErrTruncated = %v, want %v", errors.Is(err, ErrTruncated), tt.truncated)
			}
		})
	}
}

// FuzzRead reads b followed by hole zero bytes, up to 16 GiB: a sparse
// file, so the fuzzer can claim header lengths far beyond what fits in
// memory, as a hostile file on disk can.
func FuzzRead(f *testing.F) {
	f.Add(sample(f), uint64(0))
	for _, h := range hostileFiles {
		if b := h.bytes(); len(b) <= 64<<10 {
			f.Add(b, uint64(h.size)-uint64(len(b)))
		}
	}
	f.Add([]byte("\x40\x00\x00\x00\x00\x00\x00\x00{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}"), uint64(1<<40))
	f.Fuzz(func(t *testing.T, b []byte, hole uint64) {
		size := int64(len(b)) + int64(hole%(16<<30))
		file, err := Read(sparseReader{b}, size)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		for _, tt := range file.Tensors {
			if file.DataOffset+tt.End > size {
				t.Fatalf("accepted %q past the end", tt.Name)
			}
		}
	})
}

// A LoRA on every expert of a 128-expert, 48-layer MoE model (Qwen3-30B-A3B
// shaped, about 37,000 tensors and 5 MB of header) must fit the caps.
func TestLargeRealHeaderIsRead(t *testing.T) {
	var ts []TensorData
	for l := range 48 {
		for e := range 128 {
			for _, m := range []string{"gate_proj", "up_proj", "down_proj"} {
				for _, ab := range []string{"lora_A", "lora_B"} {
					ts = append(ts, TensorData{
						Name:  fmt.Sprintf("base_model.model.model.layers.%d.mlp.experts.%d.%s.%s.weight", l, e, m, ab),
						DType: "BF16", Shape: []int64{1, 2}, Data: make([]byte, 4),
					})
				}
			}
		}
	}
	var buf bytes.Buffer
	if err := Write(&buf, map[string]string{"format": "pt"}, ts); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	f, err := Read(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d tensors, %d bytes of header, read in %v", len(f.Tensors), f.DataOffset, time.Since(start))
	if len(f.Tensors) != len(ts) || f.Metadata["format"] != "pt" {
		t.Fatalf("read %d tensors, metadata %v", len(f.Tensors), f.Metadata)
	}
}

// The stream parser accepts the JSON that writers produce (any whitespace,
// escapes, a null __metadata__), refuses what the JSON decoder it replaced
// refused, and also what that decoder let through: data after the object, a
// duplicated tensor name (the last one silently won) and extra offsets.
func TestHeaderSyntax(t *testing.T) {
	entry := `{"dtype":"F32","shape":[1],"data_offsets":[0,4]}`
	for _, tt := range []struct {
		json string
		ok   bool
	}{
		{`{"a":` + entry + `}`, true},
		{" \t\r\n{ \"a\" : { \"shape\" : [ 1 ] , \"dtype\" : \"F32\" , \"data_offsets\" : [ 0 , 4 ] } }   ", true},
		{`{"\u0061\n":` + entry + `}`, true},
		{`{"__metadata__":{"format":"pt","x":"\"q\""},"a":` + entry + `}`, true},
		{`{"__metadata__":null,"a":` + entry + `}`, true},
		{`{"a":` + entry + `} x`, false},
		{`{"a":` + entry + `,}`, false},
		{`{"a":` + entry + `,"a":` + entry + `}`, false},
		{`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}`, false},
		{`{"a":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}}`, false},
		{`{"a":{"dtype":"F32","shape":[01],"data_offsets":[0,4]}}`, false},
		{`{"a":{"dtype":"F32","shape":[1e0],"data_offsets":[0,4]}}`, false},
		{`{"a":{"dtype":"F32","shape":[+1],"data_offsets":[0,4]}}`, false},
		{`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`, false},
		{`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}`, false},
		{`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}}`, false},
		{`{"a` + "\x01" + `":` + entry + `}`, false},
		{`{"__metadata__":{"n":1},"a":` + entry + `}`, false},
		{`[]`, false},
	} {
		b := binary.LittleEndian.AppendUint64(nil, uint64(len(tt.json)))
		b = append(append(b, tt.json...), 1, 2, 3, 4)
		_, err := Read(bytes.NewReader(b), int64(len(b)))
		if (err == nil) != tt.ok {
			t.Errorf("%s: err = %v, want ok=%v", tt.json, err, tt.ok)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: multi-line error", tt.json)
		}
	}
}

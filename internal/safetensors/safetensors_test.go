package safetensors

import (
	"bytes"
	"errors"
	"strings"
	"testing"
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

func FuzzRead(f *testing.F) {
	f.Add(sample(f))
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Read(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		for _, tt := range file.Tensors {
			if file.DataOffset+tt.End > int64(len(b)) {
				t.Fatalf("accepted %q past the end", tt.Name)
			}
		}
	})
}

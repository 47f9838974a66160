// Package safetensors reads and writes the safetensors format that PEFT uses
// for adapter_model.safetensors: an 8-byte header length, a JSON header, then
// raw tensor data.
//
// Read checks the header against the file size. The data end named by the
// header must equal the file size, which is how adapterd tells a complete file
// from one that is still being copied or was cut short.
//
// The header is untrusted and parsed as a stream (header.go), never held
// whole: a length the file size allows still costs only what is read, within
// fixed caps and a memory budget.
package safetensors

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
)

// Tensor is one entry of the header.
type Tensor struct {
	Name  string
	DType string  // "F32", "F16", "BF16", …
	Shape []int64 // PyTorch order: Shape[0] is the number of rows
	// Begin and End are byte offsets relative to File.DataOffset.
	Begin, End int64
}

// Elements is the product of the shape.
func (t Tensor) Elements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// File is a parsed header.
type File struct {
	Metadata   map[string]string
	Tensors    []Tensor // sorted by name
	DataOffset int64
	Size       int64
}

// Tensor returns the tensor called name.
func (f *File) Tensor(name string) (Tensor, bool) {
	i := sort.Search(len(f.Tensors), func(i int) bool { return f.Tensors[i].Name >= name })
	if i < len(f.Tensors) && f.Tensors[i].Name == name {
		return f.Tensors[i], true
	}
	return Tensor{}, false
}

// Section returns a reader over t's bytes within r.
func (f *File) Section(r io.ReaderAt, t Tensor) *io.SectionReader {
	return io.NewSectionReader(r, f.DataOffset+t.Begin, t.End-t.Begin)
}

// ErrTruncated is wrapped by errors for a file shorter than its header says.
var ErrTruncated = errors.New("truncated")

// DTypeSize is the size in bytes of one element, or 0 for an unknown dtype.
func DTypeSize(dtype string) int64 {
	switch dtype {
	case "F64", "I64", "U64":
		return 8
	case "F32", "I32", "U32":
		return 4
	case "F16", "BF16", "I16", "U16":
		return 2
	case "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2":
		return 1
	}
	return 0
}

type headerEntry struct {
	DType       string   `json:"dtype"`
	Shape       []int64  `json:"shape"`
	DataOffsets [2]int64 `json:"data_offsets"`
}

// ReadFile parses the header of the file at path. Errors name the file.
func ReadFile(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	f, err := Read(fh, st.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Read parses and checks the header of a safetensors file of the given size.
// Whatever the header claims, memory stays within about twice
// MaxHeaderMemory.
func Read(r io.ReaderAt, size int64) (*File, error) {
	var lenBuf [8]byte
	if _, err := r.ReadAt(lenBuf[:], 0); err != nil {
		return nil, fmt.Errorf("file is %d bytes, too short for a safetensors header: %w", size, ErrTruncated)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n < 2 || n > MaxHeaderSize {
		return nil, fmt.Errorf("header length %d is not plausible (the format allows 2 to %d); this is not a safetensors file", n, MaxHeaderSize)
	}
	if int64(n) > size-8 {
		return nil, fmt.Errorf("header needs %d bytes but the file has %d: %w", n+8, size, ErrTruncated)
	}
	tensors, meta, err := parseHeader(io.NewSectionReader(r, 8, int64(n)), int64(n))
	if err != nil {
		return nil, err
	}
	f := &File{Metadata: meta, Tensors: tensors, DataOffset: 8 + int64(n), Size: size}
	sort.Slice(f.Tensors, func(i, j int) bool { return f.Tensors[i].Begin < f.Tensors[j].Begin })
	dataLen := size - f.DataOffset
	var end int64
	for _, t := range f.Tensors {
		if err := checkTensor(t); err != nil {
			return nil, err
		}
		// Tensors must tile the data section without overlap, which also
		// rules out two names aliasing the same bytes.
		if t.Begin < end {
			return nil, fmt.Errorf("tensor %q overlaps the previous tensor", t.Name)
		}
		end = t.End
	}
	switch {
	case end > dataLen:
		return nil, fmt.Errorf("header says the data is %d bytes but the file holds %d: %w", end, dataLen, ErrTruncated)
	case end < dataLen:
		return nil, fmt.Errorf("file has %d bytes after the last tensor's data", dataLen-end)
	}
	sort.Slice(f.Tensors, func(i, j int) bool { return f.Tensors[i].Name < f.Tensors[j].Name })
	for i := 1; i < len(f.Tensors); i++ {
		if f.Tensors[i].Name == f.Tensors[i-1].Name {
			return nil, fmt.Errorf("tensor %q appears twice", f.Tensors[i].Name)
		}
	}
	return f, nil
}

func checkTensor(t Tensor) error {
	size := DTypeSize(t.DType)
	if size == 0 {
		return fmt.Errorf("tensor %q has unknown dtype %q", t.Name, t.DType)
	}
	n := int64(1)
	for _, d := range t.Shape {
		if d < 0 || (d > 0 && n > math.MaxInt64/8/d) {
			return fmt.Errorf("tensor %q has an impossible shape %v", t.Name, t.Shape)
		}
		n *= d
	}
	if t.Begin < 0 || t.End < t.Begin || t.End-t.Begin != n*size {
		return fmt.Errorf("tensor %q: data_offsets [%d,%d] do not match %s%v", t.Name, t.Begin, t.End, t.DType, t.Shape)
	}
	return nil
}

// TensorData is one tensor to write.
type TensorData struct {
	Name  string
	DType string
	Shape []int64
	Data  []byte
}

// Write writes a safetensors file. Tensors are stored in the order given.
func Write(w io.Writer, metadata map[string]string, tensors []TensorData) error {
	hdr := make(map[string]any, len(tensors)+1)
	if len(metadata) > 0 {
		hdr["__metadata__"] = metadata
	}
	var off int64
	for _, t := range tensors {
		want := DTypeSize(t.DType) * Tensor{Shape: t.Shape}.Elements()
		if int64(len(t.Data)) != want {
			return fmt.Errorf("tensor %q: %d bytes of data, want %d", t.Name, len(t.Data), want)
		}
		hdr[t.Name] = headerEntry{DType: t.DType, Shape: t.Shape, DataOffsets: [2]int64{off, off + want}}
		off += want
	}
	js, err := json.Marshal(hdr)
	if err != nil {
		return err
	}
	// Pad the header with spaces to 8 bytes, as the reference writer does,
	// so the data section is aligned.
	for len(js)%8 != 0 {
		js = append(js, ' ')
	}
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(js)))
	if _, err := w.Write(lenBuf[:]); err != nil {
		return err
	}
	if _, err := w.Write(js); err != nil {
		return err
	}
	for _, t := range tensors {
		if _, err := w.Write(t.Data); err != nil {
			return err
		}
	}
	return nil
}

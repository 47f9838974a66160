package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
)

const (
	magic            = 0x46554747 // "GGUF" little-endian
	defaultAlignment = 32
	maxDims          = 4 // GGML_MAX_DIMS
)

// KV is one metadata entry. Value holds a Go value of the matching type:
// uint8 … float64, bool, string, or a slice of one of those for arrays.
type KV struct {
	Key   string
	Value any
}

// Tensor is one entry of the tensor table.
type Tensor struct {
	Name string
	// Shape is in ggml order: Shape[0] is the number of columns (the
	// contiguous dimension), the reverse of PyTorch's order.
	Shape []uint64
	Type  TensorType
	// Offset is relative to File.DataOffset.
	Offset uint64
}

// Elements is the product of the shape.
func (t Tensor) Elements() uint64 {
	n := uint64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Bytes is the size of the tensor's data.
func (t Tensor) Bytes() (uint64, error) {
	if len(t.Shape) == 0 {
		return t.Type.RowBytes(1)
	}
	row, err := t.Type.RowBytes(t.Shape[0])
	if err != nil {
		return 0, err
	}
	return row * (t.Elements() / t.Shape[0]), nil
}

// File is a parsed GGUF header.
type File struct {
	Version    uint32
	KV         []KV
	Tensors    []Tensor
	Alignment  uint64
	DataOffset uint64 // absolute offset of the tensor data section
	Size       int64
}

// Get returns the value of key.
func (f *File) Get(key string) (any, bool) {
	for _, kv := range f.KV {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return nil, false
}

// String returns a string value, or "" when key is missing or not a string.
func (f *File) String(key string) string {
	v, _ := f.Get(key)
	s, _ := v.(string)
	return s
}

// Uint returns an integer value of any width, and whether it was present and
// a non-negative integer.
func (f *File) Uint(key string) (uint64, bool) {
	v, _ := f.Get(key)
	return asUint(v)
}

// Float returns a numeric value as float64.
func (f *File) Float(key string) (float64, bool) {
	v, _ := f.Get(key)
	switch x := v.(type) {
	case float32:
		return float64(x), true
	case float64:
		return x, true
	}
	if u, ok := asUint(v); ok {
		return float64(u), true
	}
	return 0, false
}

// Architecture is general.architecture.
func (f *File) Architecture() string { return f.String("general.architecture") }

// Tensor returns the tensor called name.
func (f *File) Tensor(name string) (Tensor, bool) {
	for _, t := range f.Tensors {
		if t.Name == name {
			return t, true
		}
	}
	return Tensor{}, false
}

// Section returns a reader over t's data within r.
func (f *File) Section(r io.ReaderAt, t Tensor) (*io.SectionReader, error) {
	n, err := t.Bytes()
	if err != nil {
		return nil, err
	}
	return io.NewSectionReader(r, int64(f.DataOffset+t.Offset), int64(n)), nil
}

func asUint(v any) (uint64, bool) {
	switch x := v.(type) {
	case uint8:
		return uint64(x), true
	case uint16:
		return uint64(x), true
	case uint32:
		return uint64(x), true
	case uint64:
		return x, true
	case int8:
		return uint64(x), x >= 0
	case int16:
		return uint64(x), x >= 0
	case int32:
		return uint64(x), x >= 0
	case int64:
		return uint64(x), x >= 0
	}
	return 0, false
}

// ErrNotGGUF is returned when the file does not start with the GGUF magic.
var ErrNotGGUF = errors.New("not a GGUF file (bad magic)")

// ErrTruncated is wrapped by errors about data that ends past the file's end:
// the file is incomplete, perhaps still being copied.
var ErrTruncated = errors.New("truncated")

// ReadFile parses the header of the GGUF file at path.
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
	return Read(fh, st.Size())
}

// Read parses a GGUF header from r, whose total size is size, and checks that
// the tensor table is consistent and all tensor data lies inside the file.
func Read(r io.ReaderAt, size int64) (*File, error) {
	d := &decoder{r: bufio.NewReaderSize(io.NewSectionReader(r, 0, size), 64<<10), size: uint64(size)}
	if m := d.u32(); d.err == nil && m != magic {
		return nil, ErrNotGGUF
	}
	f := &File{Size: size, Alignment: defaultAlignment}
	f.Version = d.u32()
	if d.err == nil && (f.Version < 2 || f.Version > 3) {
		return nil, fmt.Errorf("unsupported GGUF version %d (want 2 or 3)", f.Version)
	}
	nTensors, nKV := d.u64(), d.u64()
	// Every tensor entry and KV takes at least 8+4+4 bytes; this bounds
	// allocations by the file size for hostile counts.
	if d.err == nil && (nTensors > d.remaining()/16 || nKV > d.remaining()/12) {
		return nil, fmt.Errorf("header claims %d tensors and %d metadata keys, more than the file can hold: %w", nTensors, nKV, ErrTruncated)
	}
	for i := uint64(0); i < nKV && d.err == nil; i++ {
		key := d.str()
		typ := ValueType(d.u32())
		v := d.value(typ, 0)
		f.KV = append(f.KV, KV{Key: key, Value: v})
	}
	if d.err != nil {
		return nil, d.wrap("metadata")
	}
	if v, ok := f.Get("general.alignment"); ok {
		a, ok := asUint(v)
		if !ok || a == 0 || a&(a-1) != 0 || a > 1<<20 {
			return nil, fmt.Errorf("general.alignment %v is not a power of two", v)
		}
		f.Alignment = a
	}
	seen := make(map[string]bool, nTensors)
	for i := uint64(0); i < nTensors && d.err == nil; i++ {
		t := Tensor{Name: d.str()}
		nd := d.u32()
		if d.err == nil && (nd == 0 || nd > maxDims) {
			return nil, fmt.Errorf("tensor %q has %d dimensions (ggml allows 1 to %d)", t.Name, nd, maxDims)
		}
		for j := uint32(0); j < nd && d.err == nil; j++ {
			t.Shape = append(t.Shape, d.u64())
		}
		t.Type = TensorType(d.u32())
		t.Offset = d.u64()
		if d.err != nil {
			break
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("tensor %q appears twice", t.Name)
		}
		seen[t.Name] = true
		f.Tensors = append(f.Tensors, t)
	}
	if d.err != nil {
		return nil, d.wrap("tensor table")
	}
	f.DataOffset = alignUp(d.off, f.Alignment)
	for _, t := range f.Tensors {
		if err := f.checkTensor(t); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func (f *File) checkTensor(t Tensor) error {
	if !t.Type.Known() {
		return fmt.Errorf("tensor %q has unknown type %d", t.Name, uint32(t.Type))
	}
	n := uint64(1)
	for _, dim := range t.Shape {
		if dim == 0 || n > math.MaxUint64/dim || n*dim > 1<<40 {
			return fmt.Errorf("tensor %q has an impossible shape %v", t.Name, t.Shape)
		}
		n *= dim
	}
	nb, err := t.Bytes()
	if err != nil {
		return fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	if t.Offset%f.Alignment != 0 {
		return fmt.Errorf("tensor %q offset %d is not aligned to %d", t.Name, t.Offset, f.Alignment)
	}
	end := f.DataOffset + t.Offset + nb
	if t.Offset > uint64(f.Size) || end < t.Offset || end > uint64(f.Size) {
		return fmt.Errorf("tensor %q data ends at byte %d but the file has %d bytes: %w", t.Name, end, f.Size, ErrTruncated)
	}
	return nil
}

func alignUp(n, a uint64) uint64 { return (n + a - 1) / a * a }

type decoder struct {
	r    *bufio.Reader
	off  uint64
	size uint64
	err  error
	buf  [8]byte
}

func (d *decoder) remaining() uint64 { return d.size - d.off }

func (d *decoder) wrap(where string) error {
	if errors.Is(d.err, io.ErrUnexpectedEOF) || errors.Is(d.err, io.EOF) {
		return fmt.Errorf("%s ends past the end of the file: %w", where, ErrTruncated)
	}
	return fmt.Errorf("%s: %w", where, d.err)
}

func (d *decoder) read(n int) []byte {
	if d.err != nil {
		return d.buf[:n]
	}
	_, d.err = io.ReadFull(d.r, d.buf[:n])
	d.off += uint64(n)
	return d.buf[:n]
}

func (d *decoder) u8() uint8   { return d.read(1)[0] }
func (d *decoder) u16() uint16 { return binary.LittleEndian.Uint16(d.read(2)) }
func (d *decoder) u32() uint32 { return binary.LittleEndian.Uint32(d.read(4)) }
func (d *decoder) u64() uint64 { return binary.LittleEndian.Uint64(d.read(8)) }

func (d *decoder) str() string {
	n := d.u64()
	if d.err != nil {
		return ""
	}
	if n > d.remaining() {
		d.err = io.ErrUnexpectedEOF
		return ""
	}
	b := make([]byte, n)
	_, d.err = io.ReadFull(d.r, b)
	d.off += n
	return string(b)
}

func (d *decoder) value(t ValueType, depth int) any {
	switch t {
	case valUint8:
		return d.u8()
	case valInt8:
		return int8(d.u8())
	case valUint16:
		return d.u16()
	case valInt16:
		return int16(d.u16())
	case valUint32:
		return d.u32()
	case valInt32:
		return int32(d.u32())
	case valFloat32:
		return math.Float32frombits(d.u32())
	case valBool:
		return d.u8() != 0
	case valString:
		return d.str()
	case valUint64:
		return d.u64()
	case valInt64:
		return int64(d.u64())
	case valFloat64:
		return math.Float64frombits(d.u64())
	case valArray:
		if depth > 2 {
			d.fail(fmt.Errorf("arrays nested too deeply"))
			return nil
		}
		return d.array(depth)
	}
	d.fail(fmt.Errorf("unknown metadata value type %d", t))
	return nil
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *decoder) array(depth int) any {
	et := ValueType(d.u32())
	n := d.u64()
	if d.err != nil {
		return nil
	}
	min := scalarSize(et)
	if min == 0 {
		min = 8 // strings and arrays carry at least a length
	}
	if n > d.remaining()/min {
		d.err = io.ErrUnexpectedEOF
		return nil
	}
	switch et {
	case valString:
		out := make([]string, 0, n)
		for i := uint64(0); i < n && d.err == nil; i++ {
			out = append(out, d.str())
		}
		return out
	case valUint8:
		return readArray(d, n, (*decoder).u8)
	case valInt8:
		return readArray(d, n, func(d *decoder) int8 { return int8(d.u8()) })
	case valUint16:
		return readArray(d, n, (*decoder).u16)
	case valInt16:
		return readArray(d, n, func(d *decoder) int16 { return int16(d.u16()) })
	case valUint32:
		return readArray(d, n, (*decoder).u32)
	case valInt32:
		return readArray(d, n, func(d *decoder) int32 { return int32(d.u32()) })
	case valFloat32:
		return readArray(d, n, func(d *decoder) float32 { return math.Float32frombits(d.u32()) })
	case valBool:
		return readArray(d, n, func(d *decoder) bool { return d.u8() != 0 })
	case valUint64:
		return readArray(d, n, (*decoder).u64)
	case valInt64:
		return readArray(d, n, func(d *decoder) int64 { return int64(d.u64()) })
	case valFloat64:
		return readArray(d, n, func(d *decoder) float64 { return math.Float64frombits(d.u64()) })
	case valArray:
		out := make([]any, 0, n)
		for i := uint64(0); i < n && d.err == nil; i++ {
			out = append(out, d.array(depth+1))
		}
		return out
	}
	d.fail(fmt.Errorf("unknown array element type %d", et))
	return nil
}

func readArray[T any](d *decoder, n uint64, next func(*decoder) T) []T {
	out := make([]T, 0, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		out = append(out, next(d))
	}
	return out
}

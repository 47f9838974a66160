package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
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

// Fixed caps on a header, far above any real file and far below harm. A
// hostile header can claim any count and any length (a sparse file of a few
// KB on disk can be 16 GiB long), so counts are checked against these caps
// and the memory budget before anything is read, and slices grow as values
// are actually read, never from a claimed count.
const (
	// MaxKV is the most metadata keys; real files have under 100.
	MaxKV = 1 << 16
	// MaxTensors is the most tensors; a 405B model has about 1,100.
	MaxTensors = 1 << 16
	// MaxNameLen bounds a key or tensor name (llama.cpp allows 63 bytes
	// for tensor names).
	MaxNameLen = 1 << 10
	// MaxStringLen bounds one string value; chat templates, the longest
	// real ones, are tens of KB.
	MaxStringLen = 4 << 20
	// MaxArrayLen bounds one array; the largest tokenizers have about
	// 500,000 merges.
	MaxArrayLen = 1 << 22
	// MaxHeaderSize bounds the bytes of metadata and tensor table; a
	// 256k-token tokenizer takes about 12 MB.
	MaxHeaderSize = 64 << 20
	// MaxHeaderMemory is the budget for the decoded header in memory,
	// counted as Go stores it (16 bytes per string header, 40 per nested
	// array, …). Llama 3's tokenizer, the largest of the architectures
	// adapterd merges into, takes about 11 MB; reading costs up to twice
	// the budget while an array's chunks are joined.
	MaxHeaderMemory = 24 << 20
)

// ReadFile parses the header of the GGUF file at path. Errors name the file.
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

// Read parses a GGUF header from r, whose total size is size, and checks that
// the tensor table is consistent and all tensor data lies inside the file.
// Whatever the header claims, memory stays within about twice
// MaxHeaderMemory.
func Read(r io.ReaderAt, size int64) (*File, error) {
	d := &decoder{r: bufio.NewReaderSize(io.NewSectionReader(r, 0, size), 64<<10), size: uint64(size), budget: MaxHeaderMemory}
	if m := d.u32(); d.err == nil && m != magic {
		return nil, ErrNotGGUF
	}
	f := &File{Size: size, Alignment: defaultAlignment}
	f.Version = d.u32()
	if d.err == nil && (f.Version < 2 || f.Version > 3) {
		return nil, fmt.Errorf("unsupported GGUF version %d (want 2 or 3)", f.Version)
	}
	nTensors, nKV := d.u64(), d.u64()
	if d.err != nil {
		return nil, d.wrap("header")
	}
	if nTensors > MaxTensors || nKV > MaxKV {
		return nil, fmt.Errorf("header claims %d tensors and %d metadata keys; adapterd reads at most %d and %d, and no real model has that many", nTensors, nKV, MaxTensors, MaxKV)
	}
	// Every tensor entry and KV takes at least 8+4+4 bytes.
	if nTensors > d.remaining()/16 || nKV > d.remaining()/12 {
		return nil, fmt.Errorf("header claims %d tensors and %d metadata keys, more than the file can hold: %w", nTensors, nKV, ErrTruncated)
	}
	for i := uint64(0); i < nKV; i++ {
		key := d.str(MaxNameLen)
		if d.err != nil {
			return nil, d.wrap(fmt.Sprintf("metadata key #%d", i))
		}
		typ := ValueType(d.u32())
		d.spend(32+uint64(len(key)), 1)
		v := d.value(typ, 0)
		if d.err != nil {
			return nil, d.wrap(fmt.Sprintf("metadata %q", key))
		}
		f.KV = append(f.KV, KV{Key: key, Value: v})
	}
	if v, ok := f.Get("general.alignment"); ok {
		a, ok := asUint(v)
		if !ok || a == 0 || a&(a-1) != 0 || a > 1<<20 {
			return nil, fmt.Errorf("general.alignment %v is not a power of two", v)
		}
		f.Alignment = a
	}
	seen := map[string]bool{}
	for i := uint64(0); i < nTensors && d.err == nil; i++ {
		t := Tensor{Name: d.str(MaxNameLen)}
		nd := d.u32()
		if d.err == nil && (nd == 0 || nd > maxDims) {
			return nil, fmt.Errorf("tensor %q has %d dimensions (ggml allows 1 to %d)", t.Name, nd, maxDims)
		}
		// The Tensor, its shape and its entry in seen.
		d.spend(112+2*uint64(len(t.Name))+8*uint64(nd), 1)
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

// decoder reads the header sequentially. The first error sticks in err and
// turns every later read into a no-op, so callers check once per entry.
type decoder struct {
	r      *bufio.Reader
	off    uint64
	size   uint64
	budget uint64 // bytes of MaxHeaderMemory not yet spent
	err    error
	buf    [8]byte
}

func (d *decoder) remaining() uint64 { return d.size - d.off }

func (d *decoder) wrap(where string) error {
	if errors.Is(d.err, io.ErrUnexpectedEOF) || errors.Is(d.err, io.EOF) {
		return fmt.Errorf("%s ends past the end of the file: %w", where, ErrTruncated)
	}
	return fmt.Errorf("%s: %w", where, d.err)
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

// spend takes n items of size bytes each from the memory budget, or fails.
// It is called before the items are read, with counts already capped, so
// the product cannot overflow.
func (d *decoder) spend(size, n uint64) bool {
	if d.err != nil {
		return false
	}
	if n > d.budget/size {
		d.fail(fmt.Errorf("the header needs more than %d MiB of memory; adapterd reads at most that, and no real model needs it", MaxHeaderMemory>>20))
		return false
	}
	d.budget -= size * n
	return true
}

// advance moves the offset past n bytes about to be read, or fails if that
// would pass the end of the file or MaxHeaderSize.
func (d *decoder) advance(n uint64) bool {
	if d.err != nil {
		return false
	}
	if n > d.remaining() {
		d.err = io.ErrUnexpectedEOF
		return false
	}
	if d.off+n > MaxHeaderSize {
		d.fail(fmt.Errorf("the header is longer than %d MiB; adapterd reads at most that, and no real model has one that long", MaxHeaderSize>>20))
		return false
	}
	d.off += n
	return true
}

func (d *decoder) read(n int) []byte {
	if !d.advance(uint64(n)) {
		clear(d.buf[:])
		return d.buf[:n]
	}
	_, d.err = io.ReadFull(d.r, d.buf[:n])
	return d.buf[:n]
}

func (d *decoder) u8() uint8   { return d.read(1)[0] }
func (d *decoder) u16() uint16 { return binary.LittleEndian.Uint16(d.read(2)) }
func (d *decoder) u32() uint32 { return binary.LittleEndian.Uint32(d.read(4)) }
func (d *decoder) u64() uint64 { return binary.LittleEndian.Uint64(d.read(8)) }

// str reads a length-prefixed string of at most max bytes.
func (d *decoder) str(max uint64) string {
	n := d.u64()
	if d.err != nil {
		return ""
	}
	if n > max {
		d.fail(fmt.Errorf("a string of %d bytes, more than the %d adapterd reads", n, max))
		return ""
	}
	if !d.spend(16+n, 1) || !d.advance(n) {
		return ""
	}
	if n <= 64<<10 {
		b := make([]byte, n)
		_, d.err = io.ReadFull(d.r, b)
		return string(b)
	}
	// A long string is read in pieces and joined once all its bytes are
	// in, so it costs what the file holds, without append's garbage.
	var pieces [][]byte
	for left := n; left > 0; {
		p := make([]byte, min(left, 64<<10))
		if _, err := io.ReadFull(d.r, p); err != nil {
			d.fail(io.ErrUnexpectedEOF)
			return ""
		}
		pieces = append(pieces, p)
		left -= uint64(len(p))
	}
	var sb strings.Builder
	sb.Grow(int(n))
	for _, p := range pieces {
		sb.Write(p)
	}
	return sb.String()
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
		return d.str(MaxStringLen)
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

func (d *decoder) array(depth int) any {
	et := ValueType(d.u32())
	n := d.u64()
	if d.err != nil {
		return nil
	}
	if n > MaxArrayLen {
		d.fail(fmt.Errorf("an array of %d elements, more than the %d adapterd reads", n, MaxArrayLen))
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
	// Each element's memory as Go stores it: the claimed count must fit
	// the budget before a single element is read.
	mem := min
	switch et {
	case valString:
		mem = 16 // the string header; its bytes are spent as read
	case valArray:
		mem = 40 // an interface holding a slice header
	}
	if !d.spend(mem, n) {
		return nil
	}
	switch et {
	case valString:
		// str spends the header again with the bytes; give it back.
		d.budget += 16 * n
		return readArray(d, n, func(d *decoder) string { return d.str(MaxStringLen) })
	case valUint8:
		return readScalars(d, n, 1, func(b []byte) uint8 { return b[0] })
	case valInt8:
		return readScalars(d, n, 1, func(b []byte) int8 { return int8(b[0]) })
	case valUint16:
		return readScalars(d, n, 2, binary.LittleEndian.Uint16)
	case valInt16:
		return readScalars(d, n, 2, func(b []byte) int16 { return int16(binary.LittleEndian.Uint16(b)) })
	case valUint32:
		return readScalars(d, n, 4, binary.LittleEndian.Uint32)
	case valInt32:
		return readScalars(d, n, 4, func(b []byte) int32 { return int32(binary.LittleEndian.Uint32(b)) })
	case valFloat32:
		return readScalars(d, n, 4, func(b []byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b)) })
	case valBool:
		return readScalars(d, n, 1, func(b []byte) bool { return b[0] != 0 })
	case valUint64:
		return readScalars(d, n, 8, binary.LittleEndian.Uint64)
	case valInt64:
		return readScalars(d, n, 8, func(b []byte) int64 { return int64(binary.LittleEndian.Uint64(b)) })
	case valFloat64:
		return readScalars(d, n, 8, func(b []byte) float64 { return math.Float64frombits(binary.LittleEndian.Uint64(b)) })
	case valArray:
		return readArray(d, n, func(d *decoder) any { return d.array(depth + 1) })
	}
	d.fail(fmt.Errorf("unknown array element type %d", et))
	return nil
}

// arrayChunk is how many elements are read before they are stored.
const arrayChunk = 4096

// readArray reads n elements into fixed-size chunks as they arrive, then
// into one slice of the exact length once all n are in. Memory follows the
// bytes actually read: no slice is ever sized from the claimed count, and
// unlike append's doubling no growth leaves garbage behind.
func readArray[T any](d *decoder, n uint64, next func(*decoder) T) []T {
	var chunks [][]T
	for i := uint64(0); i < n && d.err == nil; {
		c := make([]T, 0, min(n-i, arrayChunk))
		for ; len(c) < cap(c) && d.err == nil; i++ {
			c = append(c, next(d))
		}
		chunks = append(chunks, c)
	}
	return join(d, n, chunks)
}

// readScalars is readArray for fixed-size elements, decoded from one read
// per chunk.
func readScalars[T any](d *decoder, n uint64, size int, conv func([]byte) T) []T {
	var chunks [][]T
	var raw []byte
	for i := uint64(0); i < n && d.err == nil; {
		k := min(n-i, arrayChunk)
		if !d.advance(k * uint64(size)) {
			break
		}
		if cap(raw) < int(k)*size {
			raw = make([]byte, int(k)*size)
		}
		raw = raw[:int(k)*size]
		if _, err := io.ReadFull(d.r, raw); err != nil {
			d.fail(io.ErrUnexpectedEOF)
			break
		}
		c := make([]T, k)
		for j := range c {
			c[j] = conv(raw[j*size:])
		}
		chunks = append(chunks, c)
		i += k
	}
	return join(d, n, chunks)
}

// join returns the n elements read into chunks as one slice, or nil after
// an error.
func join[T any](d *decoder, n uint64, chunks [][]T) []T {
	switch {
	case d.err != nil:
		return nil
	case len(chunks) == 0:
		return []T{}
	case len(chunks) == 1:
		return chunks[0]
	}
	out := make([]T, 0, n) // all n were read
	for _, c := range chunks {
		out = append(out, c...)
	}
	return out
}

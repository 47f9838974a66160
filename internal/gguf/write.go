package gguf

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// Writer streams a GGUF file: NewWriter writes the header, then WriteTensor
// is called once per tensor in table order. Nothing but the header is held in
// memory.
type Writer struct {
	w       *bufio.Writer
	tensors []Tensor
	align   uint64
	next    int
}

// NewWriter writes the header for kv and tensors to w. Tensor offsets are
// assigned here (any Offset passed in is ignored); Tensors returns them.
func NewWriter(w io.Writer, kv []KV, tensors []Tensor) (*Writer, error) {
	gw := &Writer{w: bufio.NewWriterSize(w, 1<<20), align: defaultAlignment}
	for _, e := range kv {
		if e.Key == "general.alignment" {
			a, ok := asUint(e.Value)
			if !ok || a == 0 || a&(a-1) != 0 {
				return nil, fmt.Errorf("general.alignment %v is not a power of two", e.Value)
			}
			gw.align = a
		}
	}
	var off uint64
	gw.tensors = make([]Tensor, len(tensors))
	for i, t := range tensors {
		if len(t.Shape) == 0 || len(t.Shape) > maxDims {
			return nil, fmt.Errorf("tensor %q: %d dimensions", t.Name, len(t.Shape))
		}
		n, err := t.Bytes()
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		t.Shape = append([]uint64(nil), t.Shape...)
		t.Offset = off
		gw.tensors[i] = t
		off = alignUp(off+n, gw.align)
	}

	e := &encoder{w: gw.w}
	e.u32(magic)
	e.u32(3)
	e.u64(uint64(len(tensors)))
	e.u64(uint64(len(kv)))
	for _, kv := range kv {
		e.str(kv.Key)
		if err := e.value(kv.Value); err != nil {
			return nil, fmt.Errorf("metadata %q: %w", kv.Key, err)
		}
	}
	for _, t := range gw.tensors {
		e.str(t.Name)
		e.u32(uint32(len(t.Shape)))
		for _, d := range t.Shape {
			e.u64(d)
		}
		e.u32(uint32(t.Type))
		e.u64(t.Offset)
	}
	e.pad(gw.align)
	return gw, e.err
}

// Tensors is the tensor table with offsets as written.
func (w *Writer) Tensors() []Tensor { return w.tensors }

// WriteTensor copies the next tensor's data from r, which must hold exactly
// the tensor's size in bytes.
func (w *Writer) WriteTensor(r io.Reader) error {
	if w.next >= len(w.tensors) {
		return fmt.Errorf("all %d tensors are already written", len(w.tensors))
	}
	t := w.tensors[w.next]
	w.next++
	n, _ := t.Bytes()
	got, err := io.Copy(w.w, io.LimitReader(r, int64(n)))
	if err != nil {
		return fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	if uint64(got) != n {
		return fmt.Errorf("tensor %q: got %d bytes of data, want %d", t.Name, got, n)
	}
	e := &encoder{w: w.w, n: n}
	e.pad(w.align)
	return e.err
}

// Close flushes the file after checking every tensor was written.
func (w *Writer) Close() error {
	if w.next != len(w.tensors) {
		return fmt.Errorf("wrote %d of %d tensors", w.next, len(w.tensors))
	}
	return w.w.Flush()
}

type encoder struct {
	w   io.Writer
	n   uint64
	err error
	buf [8]byte
}

func (e *encoder) write(b []byte) {
	if e.err != nil {
		return
	}
	var k int
	k, e.err = e.w.Write(b)
	e.n += uint64(k)
}

func (e *encoder) pad(align uint64) {
	if p := alignUp(e.n, align) - e.n; p > 0 {
		e.write(make([]byte, p))
	}
}

func (e *encoder) u8(v uint8)   { e.write([]byte{v}) }
func (e *encoder) u16(v uint16) { binary.LittleEndian.PutUint16(e.buf[:], v); e.write(e.buf[:2]) }
func (e *encoder) u32(v uint32) { binary.LittleEndian.PutUint32(e.buf[:], v); e.write(e.buf[:4]) }
func (e *encoder) u64(v uint64) { binary.LittleEndian.PutUint64(e.buf[:], v); e.write(e.buf[:8]) }
func (e *encoder) str(s string) { e.u64(uint64(len(s))); e.write([]byte(s)) }

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// value writes the type tag and the value.
func (e *encoder) value(v any) error {
	switch x := v.(type) {
	case uint8:
		e.u32(uint32(valUint8))
		e.u8(x)
	case int8:
		e.u32(uint32(valInt8))
		e.u8(uint8(x))
	case uint16:
		e.u32(uint32(valUint16))
		e.u16(x)
	case int16:
		e.u32(uint32(valInt16))
		e.u16(uint16(x))
	case uint32:
		e.u32(uint32(valUint32))
		e.u32(x)
	case int32:
		e.u32(uint32(valInt32))
		e.u32(uint32(x))
	case float32:
		e.u32(uint32(valFloat32))
		e.u32(math.Float32bits(x))
	case bool:
		e.u32(uint32(valBool))
		e.u8(boolByte(x))
	case string:
		e.u32(uint32(valString))
		e.str(x)
	case uint64:
		e.u32(uint32(valUint64))
		e.u64(x)
	case int64:
		e.u32(uint32(valInt64))
		e.u64(uint64(x))
	case float64:
		e.u32(uint32(valFloat64))
		e.u64(math.Float64bits(x))
	case []string:
		e.arrayHeader(valString, len(x))
		for _, s := range x {
			e.str(s)
		}
	case []uint8:
		writeArray(e, valUint8, x, e.u8)
	case []int8:
		writeArray(e, valInt8, x, func(v int8) { e.u8(uint8(v)) })
	case []uint16:
		writeArray(e, valUint16, x, e.u16)
	case []int16:
		writeArray(e, valInt16, x, func(v int16) { e.u16(uint16(v)) })
	case []uint32:
		writeArray(e, valUint32, x, e.u32)
	case []int32:
		writeArray(e, valInt32, x, func(v int32) { e.u32(uint32(v)) })
	case []float32:
		writeArray(e, valFloat32, x, func(v float32) { e.u32(math.Float32bits(v)) })
	case []bool:
		writeArray(e, valBool, x, func(v bool) { e.u8(boolByte(v)) })
	case []uint64:
		writeArray(e, valUint64, x, e.u64)
	case []int64:
		writeArray(e, valInt64, x, func(v int64) { e.u64(uint64(v)) })
	case []float64:
		writeArray(e, valFloat64, x, func(v float64) { e.u64(math.Float64bits(v)) })
	default:
		return fmt.Errorf("cannot encode %T", v)
	}
	return e.err
}

func (e *encoder) arrayHeader(t ValueType, n int) {
	e.u32(uint32(valArray))
	e.u32(uint32(t))
	e.u64(uint64(n))
}

func writeArray[T any](e *encoder, t ValueType, xs []T, put func(T)) {
	e.arrayHeader(t, len(xs))
	for _, x := range xs {
		put(x)
	}
}

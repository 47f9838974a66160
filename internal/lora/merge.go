package lora

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/x448/float16"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/quant"
)

// MergeStats describes one Merge.
type MergeStats struct {
	Tensors  int   // tensors written
	Merged   int   // of which carry a LoRA delta
	BytesIn  int64 // tensor data read from the base
	BytesOut int64 // bytes written to w, header included
}

// Merge streams base, a GGUF model whose parsed header is baseFile, to w with
// each weight that a targets replaced by W + Scale·B·A. The header's metadata
// is copied unchanged and tensors keep their order and shapes. Untouched
// tensors are copied byte for byte; merged ones are written as F32 when the
// base tensor is F32 and as F16 otherwise (quantized weights are dequantized
// first; pass the result to Ollama's quantize to shrink it again).
//
// Memory does not grow with the model: tensors are streamed one row at a
// time, so besides the adapter itself Merge holds a few rows and fixed
// buffers (a 1 MiB write buffer and a 256 KiB read buffer).
//
// Everything that can be checked up front is checked before the first byte
// is written: the architecture, every target's presence, shape and type, and
// that base really holds all the tensor data baseFile describes.
func Merge(w io.Writer, base io.ReaderAt, baseFile *gguf.File, a *Adapter) (MergeStats, error) {
	var st MergeStats
	if baseFile == nil || a == nil || base == nil {
		return st, fmt.Errorf("merge: missing base or adapter")
	}
	baseArch := baseFile.Architecture()
	if a.Arch != "" && baseArch != "" && a.Arch != baseArch {
		return st, fmt.Errorf("merge: the adapter is for architecture %q but the base model is %q", a.Arch, baseArch)
	}
	if baseFile.String("general.type") == "adapter" {
		return st, fmt.Errorf("merge: the base is itself an adapter (general.type=adapter)")
	}
	byTarget := make(map[string]*Pair, len(a.Pairs))
	for i := range a.Pairs {
		p := &a.Pairs[i]
		if err := p.check(); err != nil {
			return st, fmt.Errorf("merge: %w", err)
		}
		if byTarget[p.Target] != nil {
			return st, fmt.Errorf("merge: %s appears twice in the adapter", p.Target)
		}
		byTarget[p.Target] = p
	}
	if len(byTarget) == 0 {
		return st, fmt.Errorf("merge: the adapter has no pairs")
	}
	found := 0
	var end uint64
	out := make([]gguf.Tensor, len(baseFile.Tensors))
	for i, t := range baseFile.Tensors {
		n, err := t.Bytes()
		if err != nil {
			return st, fmt.Errorf("merge: base tensor %q: %v", t.Name, err)
		}
		end = max(end, baseFile.DataOffset+t.Offset+n)
		out[i] = t
		p := byTarget[t.Name]
		if p == nil {
			continue
		}
		found++
		if len(t.Shape) != 2 || t.Shape[0] != uint64(p.In) || t.Shape[1] != uint64(p.Out) {
			return st, fmt.Errorf("merge: %s: the adapter's delta is in=%d out=%d but the base tensor has shape %v (ggml [in, out]); wrong base model?", t.Name, p.In, p.Out, t.Shape)
		}
		if !quant.CanDequantize(t.Type) {
			return st, fmt.Errorf("merge: %s: %v", t.Name, &quant.UnsupportedError{Type: t.Type})
		}
		if t.Type != gguf.TypeF32 {
			out[i].Type = gguf.TypeF16
		}
	}
	if found != len(byTarget) {
		for _, p := range a.Pairs {
			if _, ok := baseFile.Tensor(p.Target); !ok {
				return st, fmt.Errorf("merge: the adapter targets %s, which the %s base model does not have; wrong base model?", p.Target, baseArch)
			}
		}
	}
	if end > 0 {
		var b [1]byte
		if _, err := base.ReadAt(b[:], int64(end-1)); err != nil {
			return st, fmt.Errorf("merge: base model is truncated: its tensor data should end at byte %d (%v)", end, err)
		}
	}

	cw := &countingWriter{w: w}
	gw, err := gguf.NewWriter(cw, baseFile.KV, out)
	if err != nil {
		return st, fmt.Errorf("merge: %w", err)
	}
	m := &rowMerger{br: bufio.NewReaderSize(nil, 256<<10)}
	for i, t := range baseFile.Tensors {
		sec, err := baseFile.Section(base, t)
		if err != nil {
			return st, fmt.Errorf("merge: %s: %v", t.Name, err)
		}
		var src io.Reader = &exactReader{r: sec, left: sec.Size()}
		if p := byTarget[t.Name]; p != nil {
			m.reset(src, t.Type, out[i].Type, p)
			src = m
			st.Merged++
		}
		if err := gw.WriteTensor(src); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, errShortRow) {
				return st, fmt.Errorf("merge: base model is truncated: %v", err)
			}
			return st, fmt.Errorf("merge: %w", err)
		}
		st.Tensors++
		st.BytesIn += sec.Size()
	}
	if err := gw.Close(); err != nil {
		return st, fmt.Errorf("merge: %w", err)
	}
	st.BytesOut = cw.n
	return st, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

var errShortRow = errors.New("data ends early")

// exactReader turns an early EOF into io.ErrUnexpectedEOF, so a base that
// shrinks under Merge reads as truncated rather than as a short copy.
type exactReader struct {
	r    io.Reader
	left int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if err == io.EOF && e.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// rowMerger is an io.Reader producing a merged tensor's bytes one row at a
// time: read a row of W, dequantize, add Scale·(B·A)[row], encode.
type rowMerger struct {
	br      *bufio.Reader
	in, out int
	typ     gguf.TensorType
	outTyp  gguf.TensorType
	p       *Pair
	row     int
	raw     []byte
	w       []float32
	acc     []float64
	a64     []float64
	enc     []byte
	pending []byte
	err     error
}

func (m *rowMerger) reset(src io.Reader, typ, outTyp gguf.TensorType, p *Pair) {
	m.br.Reset(src)
	m.typ, m.outTyp, m.p = typ, outTyp, p
	m.in, m.out, m.row = p.In, p.Out, 0
	rb, _ := typ.RowBytes(uint64(p.In))
	m.raw = grow(m.raw, int(rb))
	m.w = grow(m.w, p.In)
	m.acc = grow(m.acc, p.In)
	m.a64 = grow(m.a64, p.Rank*p.In)
	for i, v := range p.A {
		m.a64[i] = float64(v)
	}
	ob := 2
	if outTyp == gguf.TypeF32 {
		ob = 4
	}
	m.enc = grow(m.enc, ob*p.In)
	m.pending = nil
	m.err = nil
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

func (m *rowMerger) Read(b []byte) (int, error) {
	for len(m.pending) == 0 {
		if m.err != nil {
			return 0, m.err
		}
		if m.row == m.out {
			return 0, io.EOF
		}
		if err := m.next(); err != nil {
			m.err = err
			return 0, err
		}
	}
	n := copy(b, m.pending)
	m.pending = m.pending[n:]
	return n, nil
}

func (m *rowMerger) next() error {
	p, o := m.p, m.row
	if _, err := io.ReadFull(m.br, m.raw); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w, in row %d", errShortRow, o)
		}
		return fmt.Errorf("%s row %d: %w", p.Target, o, err)
	}
	if err := quant.DequantizeInto(m.w, m.typ, m.raw); err != nil {
		return fmt.Errorf("%s: %w", p.Target, err)
	}
	acc := m.acc
	clear(acc)
	r := p.Rank
	for k := range r {
		c := p.Scale * float64(p.B[o*r+k])
		if c == 0 {
			continue
		}
		axpy(c, m.a64[k*m.in:(k+1)*m.in], acc)
	}
	for i, wv := range m.w {
		v := float32(float64(wv) + acc[i])
		if m.outTyp == gguf.TypeF32 {
			binary.LittleEndian.PutUint32(m.enc[4*i:], math.Float32bits(v))
			continue
		}
		h, ok := f16(v)
		if !ok {
			return fmt.Errorf("%s row %d: merged value %g does not fit in F16", p.Target, o, v)
		}
		binary.LittleEndian.PutUint16(m.enc[2*i:], h)
	}
	m.pending = m.enc
	m.row++
	return nil
}

// axpy adds c·x to y.
func axpy(c float64, x, y []float64) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += c * v
	}
}

// f16 encodes v as IEEE half, reporting false when a finite v overflows.
func f16(v float32) (uint16, bool) {
	h := float16.Fromfloat32(v)
	if h.IsInf(0) && !math.IsInf(float64(v), 0) {
		return 0, false
	}
	return h.Bits(), true
}

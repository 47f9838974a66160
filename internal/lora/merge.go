package lora

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"strings"
	"sync"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/quant"
)

// MergeStats describes one Merge.
type MergeStats struct {
	Tensors     int   // tensors written
	Merged      int   // of which carry a LoRA delta
	Requantized int   // of which were converted to another type without a delta (presets)
	BytesIn     int64 // tensor data read from the base
	BytesOut    int64 // bytes written to w, header included
}

// Quantize says which type Merge writes each tensor in: the sidecar's
// "quantize:" value, parsed by ParseQuantize. The zero value keeps the
// base's types.
type Quantize struct {
	mode   quantizeMode
	preset quant.Preset
}

type quantizeMode int

const (
	keepTypes quantizeMode = iota
	mergedF16
	preset
)

// QuantizeF16 writes merged tensors as F16 (F32 ones stay F32) and copies
// the rest: adapterd's behaviour before it could quantize, and Merge's.
var QuantizeF16 = Quantize{mode: mergedF16}

// ParseQuantize reads a quantize setting:
//
//   - "" (or "base"): every merged tensor goes back into its base tensor's
//     own type (a Q4_K weight stays Q4_K), so the output is the base's size;
//   - "f16": merged tensors become F16 (F32 stays F32), untouched ones are
//     copied; bigger, but no second rounding;
//   - a llama.cpp preset ("q4_K_M", "q8_0", …; see quant.PresetNames):
//     every weight gets the type llama.cpp's quantizer would give it, and
//     general.file_type says the preset.
//
// Letter case does not matter.
func ParseQuantize(s string) (Quantize, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "base":
		return Quantize{}, nil
	case "f16":
		return QuantizeF16, nil
	}
	p, err := quant.ParsePreset(s)
	if err != nil {
		return Quantize{}, fmt.Errorf("quantize: %q is not \"f16\", \"base\" or one of %s", s, strings.Join(quant.PresetNames(), ", "))
	}
	return Quantize{mode: preset, preset: p}, nil
}

func (q Quantize) String() string {
	switch q.mode {
	case mergedF16:
		return "f16"
	case preset:
		return q.preset.String()
	}
	return "base"
}

// MergeOptions tune MergeWith. The zero value keeps the base's types and
// uses every core.
type MergeOptions struct {
	Quantize Quantize
	// Workers is how many goroutines dequantize, add the delta and
	// quantize; each takes one window of rows of the tensor at hand.
	// 0 means runtime.GOMAXPROCS(0).
	Workers int
}

// Merge is MergeWith with QuantizeF16: merged tensors written as F16 (F32
// stays F32), everything else copied.
func Merge(w io.Writer, base io.ReaderAt, baseFile *gguf.File, a *Weights) (MergeStats, error) {
	return MergeWith(w, base, baseFile, a, MergeOptions{Quantize: QuantizeF16})
}

// MergeWith streams base, a GGUF model whose parsed header is baseFile, to
// w with each weight that a targets replaced by W + Scale·B·A. Metadata is
// copied (under a preset, general.file_type set to the preset's and
// general.quantization_version to 2, as llama.cpp writes) and tensors
// keep their order and shapes. Tensors that keep their type and get no
// delta are copied byte for byte; the others are dequantized, given their
// delta and quantized to their output type (see ParseQuantize) with ggml's
// own quantizers (package quant), bit for bit.
//
// Memory does not grow with the model: a tensor is converted one window of
// rows at a time, each worker taking its share of the window, so besides the
// adapter itself MergeWith holds a window per worker and fixed buffers (a
// 1 MiB write buffer and a 256 KiB read buffer).
//
// Everything that can be checked up front is checked before the first byte
// is written: the architecture, every target's presence, shape and type,
// every output type, and that base really holds all the tensor data
// baseFile describes.
func MergeWith(w io.Writer, base io.ReaderAt, baseFile *gguf.File, a *Weights, opt MergeOptions) (MergeStats, error) {
	var st MergeStats
	if baseFile == nil || a == nil || base == nil {
		return st, fmt.Errorf("merge: missing base or adapter")
	}
	baseFile = untieOutput(baseFile, a) // output.go
	baseArch := baseFile.Architecture()
	if a.Arch != "" && baseArch != "" && a.Arch != baseArch {
		return st, fmt.Errorf("merge: the adapter is for architecture %q but the base model is %q", a.Arch, baseArch)
	}
	if baseFile.String("general.type") == "adapter" {
		return st, fmt.Errorf("merge: the base is itself an adapter (general.type=adapter)")
	}
	byTarget := make(map[string]*Delta, len(a.Deltas))
	for i := range a.Deltas {
		p := &a.Deltas[i]
		if err := p.check(); err != nil {
			return st, fmt.Errorf("merge: %w", err)
		}
		if byTarget[p.Target] != nil {
			return st, fmt.Errorf("merge: %s appears twice in the adapter", p.Target)
		}
		byTarget[p.Target] = p
	}
	repl, err := replacements(a, byTarget)
	if err != nil {
		return st, err
	}
	if len(byTarget) == 0 && len(repl) == 0 {
		return st, fmt.Errorf("merge: the adapter has no pairs")
	}
	q := opt.Quantize
	var plan []gguf.TensorType
	if q.mode == preset {
		var err error
		if plan, err = q.preset.Plan(baseFile); err != nil {
			return st, fmt.Errorf("merge: quantize %s: %w", q.preset, err)
		}
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
		rp := repl[t.Name]
		if rp != nil {
			found++
			if err := rp.fits(t); err != nil {
				return st, err
			}
		}
		if p != nil {
			found++
			if len(t.Shape) != 2 || t.Shape[0] != uint64(p.In) || t.Shape[1] != uint64(p.Out) {
				return st, fmt.Errorf("merge: %s: the adapter's delta is in=%d out=%d but the base tensor has shape %v (ggml [in, out]); wrong base model?", t.Name, p.In, p.Out, t.Shape)
			}
		}
		switch {
		case q.mode == preset:
			out[i].Type = plan[i]
		case p == nil && rp == nil:
		case q.mode == mergedF16:
			if t.Type != gguf.TypeF32 {
				out[i].Type = gguf.TypeF16
			}
		case !quant.CanQuantize(t.Type):
			// A type we read but do not write (MXFP4): the next best.
			out[i].Type = gguf.TypeF16
			if t.Shape[0]%32 == 0 {
				out[i].Type = gguf.TypeQ8_0
			}
		}
		if p == nil && rp == nil && out[i].Type == t.Type {
			continue
		}
		if !quant.CanDequantize(t.Type) {
			return st, fmt.Errorf("merge: %s: %v", t.Name, &quant.UnsupportedError{Type: t.Type})
		}
		if len(t.Shape) == 0 {
			return st, fmt.Errorf("merge: %s: cannot convert a tensor without a shape", t.Name)
		}
		if _, err := out[i].Bytes(); err != nil {
			return st, fmt.Errorf("merge: %s: cannot be written as %s: %v", t.Name, out[i].Type, err)
		}
	}
	if found != len(byTarget)+len(repl) {
		for _, r := range a.Replace {
			if _, ok := baseFile.Tensor(r.Target); !ok {
				return st, fmt.Errorf("merge: the adapter replaces %s, which the %s base model does not have; wrong base model?", r.Target, baseArch)
			}
		}
		for _, p := range a.Deltas {
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
	kv := baseFile.KV
	if q.mode == preset {
		kv = withKV(kv, "general.file_type", q.preset.FileType())
		// llama.cpp's quantize writes it; ggml's block formats are at 2.
		kv = withKV(kv, "general.quantization_version", uint32(2))
	}

	cw := &countingWriter{w: w}
	gw, err := gguf.NewWriter(cw, kv, out)
	if err != nil {
		return st, fmt.Errorf("merge: %w", err)
	}
	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	c := newConverter(workers)
	for i, t := range baseFile.Tensors {
		sec, err := baseFile.Section(base, t)
		if err != nil {
			return st, fmt.Errorf("merge: %s: %v", t.Name, err)
		}
		var src io.Reader = &exactReader{r: sec, left: sec.Size()}
		p := byTarget[t.Name]
		from := t
		closeSrc := func() {}
		if rp := repl[t.Name]; rp != nil {
			if src, from, closeSrc, err = rp.source(t); err != nil {
				return st, err
			}
		}
		if p != nil || out[i].Type != from.Type || from.Type != t.Type {
			c.reset(src, from, out[i].Type, p)
			src = c
			if p != nil {
				st.Merged++
			} else {
				st.Requantized++
			}
		}
		err = gw.WriteTensor(src)
		closeSrc()
		if err != nil {
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

// withKV is a copy of kv with key set to v (appended if missing).
func withKV(kv []gguf.KV, key string, v any) []gguf.KV {
	out := make([]gguf.KV, 0, len(kv)+1)
	seen := false
	for _, e := range kv {
		if e.Key == key {
			e.Value, seen = v, true
		}
		out = append(out, e)
	}
	if !seen {
		out = append(out, gguf.KV{Key: key, Value: v})
	}
	return out
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

// converter is an io.Reader producing a tensor's bytes in its output type,
// one window of rows at a time: read the window, then each worker takes a
// contiguous share of its rows and, row by row, dequantizes, adds
// Scale·(B·A)[row] when there is a delta, and encodes. Rows never straddle
// blocks, so the shares are independent and the bytes do not depend on the
// number of workers.
type converter struct {
	br       *bufio.Reader
	workers  []convWorker
	name     string
	from, to gguf.TensorType
	p        *Delta
	a64      []float64
	in, rows int
	inRow    int // bytes of one input row
	outRow   int // bytes of one output row
	perWin   int // rows per window
	row      int // next row to read
	raw, enc []byte
	pending  []byte
	err      error
}

// convWorker is one worker's scratch space, reused across windows and
// tensors.
type convWorker struct {
	w    []float32
	offs []int64   // byte offsets of A's rows with a non-zero coefficient
	cf   []float64 // their coefficients Scale·B[row, k]
	err  error
}

// windowElems is about how many elements each worker converts per window:
// enough to amortize starting it, small enough to keep memory flat. A
// variable only so tests can force many small windows.
var windowElems = 1 << 16

func newConverter(workers int) *converter {
	return &converter{br: bufio.NewReaderSize(nil, 256<<10), workers: make([]convWorker, workers)}
}

func (c *converter) reset(src io.Reader, t gguf.Tensor, to gguf.TensorType, p *Delta) {
	c.br.Reset(src)
	c.name, c.from, c.to, c.p = t.Name, t.Type, to, p
	c.in = int(t.Shape[0])
	c.rows = int(t.Elements() / t.Shape[0])
	rb, _ := t.Type.RowBytes(uint64(c.in))
	ob, _ := to.RowBytes(uint64(c.in))
	c.inRow, c.outRow = int(rb), int(ob)
	c.perWin = len(c.workers) * max(1, windowElems/c.in)
	c.raw = grow(c.raw, c.perWin*c.inRow)
	c.enc = grow(c.enc, c.perWin*c.outRow)
	for i := range c.workers {
		c.workers[i].w = grow(c.workers[i].w, c.in)
		if p != nil {
			c.workers[i].offs = grow(c.workers[i].offs, p.Rank)
			c.workers[i].cf = grow(c.workers[i].cf, p.Rank)
		}
	}
	c.a64 = c.a64[:0]
	if p != nil {
		c.a64 = grow(c.a64, p.Rank*p.In)
		for i, v := range p.A {
			c.a64[i] = float64(v)
		}
	}
	c.row, c.pending, c.err = 0, nil, nil
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

func (c *converter) Read(b []byte) (int, error) {
	for len(c.pending) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		if c.row == c.rows {
			return 0, io.EOF
		}
		if err := c.window(); err != nil {
			c.err = err
			return 0, err
		}
	}
	n := copy(b, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// window converts the next window of rows into c.pending.
func (c *converter) window() error {
	first := c.row
	n := min(c.perWin, c.rows-first)
	raw := c.raw[:n*c.inRow]
	if _, err := io.ReadFull(c.br, raw); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w, in %s rows %d..%d", errShortRow, c.name, first, first+n-1)
		}
		return fmt.Errorf("%s rows %d..%d: %w", c.name, first, first+n-1, err)
	}
	share := (n + len(c.workers) - 1) / len(c.workers)
	var wg sync.WaitGroup
	for i := range c.workers {
		lo, hi := i*share, min(n, (i+1)*share)
		if lo >= hi {
			break
		}
		wk := &c.workers[i]
		wk.err = nil
		run := func() {
			for r := lo; r < hi; r++ {
				if err := c.convertRow(wk, first+r, raw[r*c.inRow:(r+1)*c.inRow], c.enc[r*c.outRow:(r+1)*c.outRow]); err != nil {
					wk.err = err
					return
				}
			}
		}
		if hi == n { // the last share runs here
			run()
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); run() }()
	}
	wg.Wait()
	for i := range c.workers {
		if err := c.workers[i].err; err != nil {
			return err
		}
	}
	c.pending = c.enc[:n*c.outRow]
	c.row += n
	return nil
}

func (c *converter) convertRow(wk *convWorker, o int, raw, dst []byte) error {
	if err := quant.DequantizeInto(wk.w, c.from, raw); err != nil {
		return fmt.Errorf("%s: %w", c.name, err)
	}
	if p := c.p; p != nil {
		// The k whose coefficient is 0 add nothing; leaving them out
		// keeps the sum's bits as before (a +0 term can turn -0 into +0).
		r, nk := p.Rank, 0
		for k := range r {
			cf := p.Scale * float64(p.B[o*r+k])
			if cf == 0 {
				continue
			}
			wk.offs[nk], wk.cf[nk] = int64(8*k*c.in), cf
			nk++
		}
		addDelta(wk.w, c.a64, wk.offs[:nk], wk.cf[:nk])
	}
	if c.to == gguf.TypeF16 {
		for _, v := range wk.w {
			if !fitsF16(v) {
				return fmt.Errorf("%s row %d: merged value %g does not fit in F16", c.name, o, v)
			}
		}
	}
	return quant.QuantizeInto(dst, c.to, wk.w)
}

// fitsF16 reports whether v stays finite in IEEE half (or was not finite
// to begin with): the largest half is 65504, and rounding to nearest even
// sends 65520 (0x477FF000) and above to infinity.
func fitsF16(v float32) bool {
	a := math.Float32bits(v) &^ (1 << 31)
	return a < 0x477FF000 || a >= 0x7F800000
}

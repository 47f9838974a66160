package lora

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/safetensors"
	"github.com/adapterd/adapterd/internal/spec"
)

// A diverged training run writes NaN or Inf into its weights, and the model
// made from them produces garbage while looking ready. The values are
// checked as the file's bytes go by for hashing, so the check costs no
// extra read: FiniteChecker is an io.Writer to put beside the hash.

// region is one tensor's bytes in file coordinates.
type region struct {
	name       string
	start, end int64
	elem       int // bytes per value: 4 (F32), 2 (F16, BF16); 34 for a Q8_0 block
	kind       byte
}

const (
	kindF32 byte = iota
	kindF16
	kindBF16
	kindQ8_0 // only the block scale can be non-finite
)

// FiniteChecker watches a file's bytes, written to it in order from offset
// 0, for non-finite weights. Err reports the first tensor that has one.
type FiniteChecker struct {
	path    string
	regions []region // sorted by start
	off     int64
	cur     int
	carry   []byte // a value split across two writes
	err     error
}

// NewFiniteChecker prepares a checker for one of a's weight files, from its
// header; other files (adapter_config.json) get a checker that checks
// nothing.
func (a *Adapter) NewFiniteChecker(path string, fh *os.File, size int64) (*FiniteChecker, error) {
	c := &FiniteChecker{path: path}
	switch {
	case a.Format == FormatGGUF:
		f, err := gguf.Read(fh, size)
		if err != nil {
			return nil, err
		}
		for _, t := range f.Tensors {
			n, err := t.Bytes()
			if err != nil {
				continue
			}
			r := region{name: t.Name, start: int64(f.DataOffset + t.Offset)}
			r.end = r.start + int64(n)
			switch t.Type {
			case gguf.TypeF32:
				r.elem, r.kind = 4, kindF32
			case gguf.TypeF16:
				r.elem, r.kind = 2, kindF16
			case gguf.TypeBF16:
				r.elem, r.kind = 2, kindBF16
			case gguf.TypeQ8_0:
				r.elem, r.kind = 34, kindQ8_0
			default:
				continue
			}
			c.regions = append(c.regions, r)
		}
	case filepath.Base(path) == peftWeightsName:
		f, err := safetensors.Read(fh, size)
		if err != nil {
			return nil, err
		}
		for _, t := range f.Tensors {
			r := region{name: t.Name, start: f.DataOffset + t.Begin, end: f.DataOffset + t.End}
			switch t.DType {
			case "F32":
				r.elem, r.kind = 4, kindF32
			case "F16":
				r.elem, r.kind = 2, kindF16
			case "BF16":
				r.elem, r.kind = 2, kindBF16
			default:
				continue
			}
			c.regions = append(c.regions, r)
		}
	}
	sort.Slice(c.regions, func(i, j int) bool { return c.regions[i].start < c.regions[j].start })
	if _, err := fh.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return c, nil
}

// Write checks p, the next bytes of the file. It never fails, so the hash
// beside it still sees every byte; Err has the verdict.
func (c *FiniteChecker) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && c.err == nil && c.cur < len(c.regions) {
		r := c.regions[c.cur]
		if c.off >= r.end {
			c.cur++
			c.carry = c.carry[:0]
			continue
		}
		if c.off < r.start {
			skip := min(int64(len(p)), r.start-c.off)
			p, c.off = p[skip:], c.off+skip
			continue
		}
		take := min(int64(len(p)), r.end-c.off)
		c.check(r, p[:take])
		p, c.off = p[take:], c.off+take
	}
	c.off += int64(len(p))
	return n, nil
}

func (c *FiniteChecker) check(r region, b []byte) {
	if len(c.carry) > 0 {
		need := r.elem - len(c.carry)
		if len(b) < need {
			c.carry = append(c.carry, b...)
			return
		}
		c.carry = append(c.carry, b[:need]...)
		c.value(r, c.carry)
		b, c.carry = b[need:], c.carry[:0]
	}
	for len(b) >= r.elem && c.err == nil {
		c.value(r, b[:r.elem])
		b = b[r.elem:]
	}
	c.carry = append(c.carry, b...)
}

func (c *FiniteChecker) value(r region, b []byte) {
	var v float64
	switch r.kind {
	case kindF32:
		v = float64(math.Float32frombits(binary.LittleEndian.Uint32(b)))
	case kindBF16:
		v = float64(math.Float32frombits(uint32(binary.LittleEndian.Uint16(b)) << 16))
	case kindF16, kindQ8_0:
		// An F16 is non-finite exactly when its exponent bits are all set.
		if binary.LittleEndian.Uint16(b)&0x7c00 == 0x7c00 {
			v = math.NaN()
		}
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		c.err = &spec.Error{File: c.path, Msg: fmt.Sprintf("tensor %s holds NaN or Inf values (a diverged training run?); retrain or pick an earlier checkpoint", r.name)}
	}
}

// Err is the first non-finite weight found, as a one-line error.
func (c *FiniteChecker) Err() error { return c.err }

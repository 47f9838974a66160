package lora_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/x448/float16"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/lora"
	"github.com/adapterd/adapterd/internal/quant"
	"github.com/adapterd/adapterd/internal/tensor"
	"github.com/adapterd/adapterd/internal/testfixture"
)

// writeBase writes b as an F32 GGUF in a temp dir and parses its header.
func writeBase(t testing.TB, b testfixture.Base) (string, *gguf.File) {
	t.Helper()
	path := filepath.Join(t.TempDir(), b.Arch+"-base.gguf")
	if err := b.WriteGGUF(path); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, f
}

func baseInfo(t testing.TB, f *gguf.File) lora.BaseInfo {
	t.Helper()
	bi, err := lora.BaseInfoFromGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	return bi
}

func rawTensor(t testing.TB, path string, f *gguf.File, name string) []byte {
	t.Helper()
	ti, ok := f.Tensor(name)
	if !ok {
		t.Fatalf("%s has no tensor %s", path, name)
	}
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	sec, err := f.Section(fh, ti)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(sec)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tensor64 reads a tensor as float64 through quant.Dequantize.
func tensor64(t testing.TB, path string, f *gguf.File, name string) []float64 {
	t.Helper()
	ti, _ := f.Tensor(name)
	v, err := quant.Dequantize(ti.Type, rawTensor(t, path, f, name), int(ti.Elements()))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// permute64 is the RoPE row permutation, written independently of
// lora.PermuteRows from numpy's reshape(n_head, 2, rows/n_head/2, cols)
// .swapaxes(1, 2): output row h·rows/n_head + 2j + s is input row
// h·rows/n_head + s·rows/n_head/2 + j.
func permute64(m []float64, rows, cols, nHead int) []float64 {
	out := make([]float64, len(m))
	per := rows / nHead
	for dst := 0; dst < rows; dst++ {
		h, r := dst/per, dst%per
		j, s := r/2, r%2
		src := h*per + s*per/2 + j
		copy(out[dst*cols:(dst+1)*cols], m[src*cols:(src+1)*cols])
	}
	return out
}

// refDelta is scale·B·A in float64, shape [out, in], with its rows permuted
// when heads > 0: the reference permutes the product, not B.
func refDelta(p testfixture.Pair, rank int, scale float64, heads int) []float64 {
	in, out := p.Module.In, p.Module.Out
	d := make([]float64, out*in)
	for o := 0; o < out; o++ {
		for i := 0; i < in; i++ {
			var s float64
			for k := 0; k < rank; k++ {
				s += float64(p.B[o*rank+k]) * float64(p.A[k*in+i])
			}
			d[o*in+i] = scale * s
		}
	}
	if heads > 0 {
		d = permute64(d, out, in, heads)
	}
	return d
}

// ropeHeads is which head count the reference permutes a module's output by.
func ropeHeads(b testfixture.Base, peft string) int {
	if b.Arch != "llama" {
		return 0
	}
	switch peft {
	case "q_proj":
		return b.Heads
	case "k_proj":
		return b.KVHeads
	}
	return 0
}

func targetName(p testfixture.Pair) string {
	return fmt.Sprintf("blk.%d.%s.weight", p.Layer, p.Module.GGUF)
}

// near reports the first index where got and want differ by more than
// rel·|want| + abs.
func near(got, want []float64, rel, abs float64) error {
	if len(got) != len(want) {
		return fmt.Errorf("length %d, want %d", len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(got[i] - want[i]); d > rel*math.Abs(want[i])+abs || math.IsNaN(got[i]) {
			return fmt.Errorf("element %d: got %.9g, want %.9g (diff %.3g)", i, got[i], want[i], d)
		}
	}
	return nil
}

// ---- test-side quantizers and block packers, written from the block
// layouts in ggml-common.h (not from ggml's quantize code).

func f16bits(x float32) uint16 { return float16.Fromfloat32(x).Bits() }
func f16val(x float32) float32 { return float16.Fromfloat32(x).Float32() }

func putHalf(b []byte, x float32) float32 {
	binary.LittleEndian.PutUint16(b, f16bits(x))
	return f16val(x)
}

func packQ8_0(d float32, q []int8) []byte {
	b := make([]byte, 34)
	putHalf(b, d)
	for j, v := range q {
		b[2+j] = byte(v)
	}
	return b
}

func packQ4_0(d float32, q []uint8) []byte { // q in 0..15
	b := make([]byte, 18)
	putHalf(b, d)
	for j := 0; j < 16; j++ {
		b[2+j] = q[j] | q[j+16]<<4
	}
	return b
}

func packQ4_1(d, m float32, q []uint8) []byte {
	b := make([]byte, 20)
	putHalf(b, d)
	putHalf(b[2:], m)
	for j := 0; j < 16; j++ {
		b[4+j] = q[j] | q[j+16]<<4
	}
	return b
}

// packQ5 packs 32 5-bit values: low nibbles like Q4_0, the fifth bit of
// element e in bit e of the 32-bit qh.
func packQ5(q []uint8, qh, qs []byte) {
	var h uint32
	for e := 0; e < 32; e++ {
		h |= uint32(q[e]>>4) << e
	}
	binary.LittleEndian.PutUint32(qh, h)
	for j := 0; j < 16; j++ {
		qs[j] = q[j]&15 | (q[j+16]&15)<<4
	}
}

func packQ5_0(d float32, q []uint8) []byte {
	b := make([]byte, 22)
	putHalf(b, d)
	packQ5(q, b[2:6], b[6:22])
	return b
}

func packQ5_1(d, m float32, q []uint8) []byte {
	b := make([]byte, 24)
	putHalf(b, d)
	putHalf(b[2:], m)
	packQ5(q, b[4:8], b[8:24])
	return b
}

// packScalesK packs eight 6-bit scales and mins into 12 bytes: sub-blocks
// 0..3 in the low 6 bits of bytes j (scale) and j+4 (min); sub-blocks 4..7
// with low nibbles in byte j+4 (scale low, min high) and top two bits in the
// top bits of bytes j-4 (scale) and j (min).
func packScalesK(sc, m [8]uint8) []byte {
	b := make([]byte, 12)
	for j := 0; j < 4; j++ {
		b[j] = sc[j] & 63
		b[j+4] = m[j] & 63
	}
	for j := 4; j < 8; j++ {
		b[j+4] = sc[j]&15 | (m[j]&15)<<4
		b[j-4] |= (sc[j] >> 4) << 6
		b[j] |= (m[j] >> 4) << 6
	}
	return b
}

// packQ4_K: element e belongs to sub-block e/32; elements 64c+l and
// 64c+32+l share byte 32c+l of qs (low and high nibble).
func packQ4_K(d, dmin float32, sc, m [8]uint8, q []uint8) []byte {
	b := make([]byte, 144)
	putHalf(b, d)
	putHalf(b[2:], dmin)
	copy(b[4:16], packScalesK(sc, m))
	for c := 0; c < 4; c++ {
		for l := 0; l < 32; l++ {
			b[16+32*c+l] = q[64*c+l] | q[64*c+32+l]<<4
		}
	}
	return b
}

// packQ5_K: like Q4_K plus qh[32]: bit 2c of qh[l] is the fifth bit of
// element 64c+l, bit 2c+1 that of element 64c+32+l.
func packQ5_K(d, dmin float32, sc, m [8]uint8, q []uint8) []byte {
	b := make([]byte, 176)
	putHalf(b, d)
	putHalf(b[2:], dmin)
	copy(b[4:16], packScalesK(sc, m))
	for c := 0; c < 4; c++ {
		for l := 0; l < 32; l++ {
			lo, hi := q[64*c+l], q[64*c+32+l]
			b[48+32*c+l] = lo&15 | (hi&15)<<4
			b[16+l] |= (lo>>4)<<(2*c) | (hi>>4)<<(2*c+1)
		}
	}
	return b
}

// packQ6_K: ql[128], qh[64], scales[16], d. Element e = 128n + 32g + l
// (g = 0..3) stores q+32 as a low nibble in ql[64n + l + 32·(g&1)] (low half
// for g < 2, high half otherwise) and two high bits at bit 2g of
// qh[32n + l]. Its scale is scales[e/16].
func packQ6_K(d float32, sc [16]int8, q []int8) []byte {
	b := make([]byte, 210)
	for e := 0; e < 256; e++ {
		n, g, l := e/128, e%128/32, e%32
		v := uint8(int(q[e]) + 32)
		i := 64*n + l + 32*(g&1)
		if g < 2 {
			b[i] |= v & 15
		} else {
			b[i] |= (v & 15) << 4
		}
		b[128+32*n+l] |= (v >> 4) << (2 * g)
	}
	for i, s := range sc {
		b[192+i] = byte(s)
	}
	putHalf(b[208:], d)
	return b
}

func roundClamp(x float64, lo, hi int) int {
	return max(lo, min(hi, int(math.Round(x))))
}

// quantize encodes x (a whole number of blocks) as typ with simple
// round-to-nearest quantizers. They are not ggml's (whose k-quants search
// for better scales) but produce valid blocks, which is all a merge test
// needs: the merge must reproduce dequant(W) + delta whatever the blocks.
func quantize(typ gguf.TensorType, x []float32) []byte {
	var out []byte
	switch typ {
	case gguf.TypeQ8_0:
		for o := 0; o < len(x); o += 32 {
			blk := x[o : o+32]
			var amax float64
			for _, v := range blk {
				amax = max(amax, math.Abs(float64(v)))
			}
			d := f16val(float32(amax / 127))
			q := make([]int8, 32)
			for j, v := range blk {
				if d != 0 {
					q[j] = int8(roundClamp(float64(v)/float64(d), -127, 127))
				}
			}
			out = append(out, packQ8_0(d, q)...)
		}
	case gguf.TypeQ4_0:
		for o := 0; o < len(x); o += 32 {
			blk := x[o : o+32]
			var mx float64 // signed value of largest magnitude
			for _, v := range blk {
				if math.Abs(float64(v)) > math.Abs(mx) {
					mx = float64(v)
				}
			}
			d := f16val(float32(mx / -8))
			q := make([]uint8, 32)
			for j, v := range blk {
				q[j] = 8
				if d != 0 {
					q[j] = uint8(roundClamp(float64(v)/float64(d)+8, 0, 15))
				}
			}
			out = append(out, packQ4_0(d, q)...)
		}
	case gguf.TypeQ4_K:
		for o := 0; o < len(x); o += 256 {
			blk := x[o : o+256]
			var scales, mins [8]float64
			for s := 0; s < 8; s++ {
				lo, hi := 0.0, 0.0
				for _, v := range blk[32*s : 32*s+32] {
					lo, hi = min(lo, float64(v)), max(hi, float64(v))
				}
				scales[s], mins[s] = (hi-lo)/15, -lo
			}
			var smax, mmax float64
			for s := 0; s < 8; s++ {
				smax, mmax = max(smax, scales[s]), max(mmax, mins[s])
			}
			d, dmin := f16val(float32(smax/63)), f16val(float32(mmax/63))
			var sc, m [8]uint8
			q := make([]uint8, 256)
			for s := 0; s < 8; s++ {
				if d != 0 {
					sc[s] = uint8(roundClamp(scales[s]/float64(d), 0, 63))
				}
				if dmin != 0 {
					m[s] = uint8(roundClamp(mins[s]/float64(dmin), 0, 63))
				}
				step, off := float64(d)*float64(sc[s]), float64(dmin)*float64(m[s])
				for l := 0; l < 32; l++ {
					if step != 0 {
						q[32*s+l] = uint8(roundClamp((float64(blk[32*s+l])+off)/step, 0, 15))
					}
				}
			}
			out = append(out, packQ4_K(d, dmin, sc, m, q)...)
		}
	case gguf.TypeQ6_K:
		for o := 0; o < len(x); o += 256 {
			blk := x[o : o+256]
			var subs [16]float64
			var smax float64
			for s := 0; s < 16; s++ {
				for _, v := range blk[16*s : 16*s+16] {
					subs[s] = max(subs[s], math.Abs(float64(v))/31)
				}
				smax = max(smax, subs[s])
			}
			d := f16val(float32(smax / 127))
			var sc [16]int8
			q := make([]int8, 256)
			for s := 0; s < 16; s++ {
				if d != 0 {
					sc[s] = int8(roundClamp(subs[s]/float64(d), -128, 127))
				}
				step := float64(d) * float64(sc[s])
				for l := 0; l < 16; l++ {
					if step != 0 {
						q[16*s+l] = int8(roundClamp(float64(blk[16*s+l])/step, -32, 31))
					}
				}
			}
			out = append(out, packQ6_K(d, sc, q)...)
		}
	case gguf.TypeF32:
		out, _ = tensor.Encode(tensor.F32, x)
	case gguf.TypeF16:
		out, _ = tensor.Encode(tensor.F16, x)
	case gguf.TypeBF16:
		out, _ = tensor.Encode(tensor.BF16, x)
	default:
		panic("test quantizer: no " + typ.String())
	}
	return out
}

// quantizeBase rewrites the F32 GGUF at src to dst with every 2-D weight
// whose rows fit typ's blocks stored as typ; everything else is copied.
func quantizeBase(t testing.TB, src string, typ gguf.TensorType) (string, *gguf.File) {
	t.Helper()
	f, err := gguf.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	ts := append([]gguf.Tensor(nil), f.Tensors...)
	quantized := make([]bool, len(ts))
	for i, ti := range ts {
		if len(ti.Shape) == 2 && ti.Shape[0]%typ.BlockSize() == 0 && strings.HasSuffix(ti.Name, ".weight") {
			ts[i].Type, quantized[i] = typ, true
		}
	}
	dst := strings.TrimSuffix(src, ".gguf") + "-" + typ.String() + ".gguf"
	var buf bytes.Buffer
	w, err := gguf.NewWriter(&buf, f.KV, ts)
	if err != nil {
		t.Fatal(err)
	}
	for i, ti := range f.Tensors {
		raw := rawTensor(t, src, f, ti.Name)
		if quantized[i] {
			v, err := quant.Dequantize(gguf.TypeF32, raw, int(ti.Elements()))
			if err != nil {
				t.Fatal(err)
			}
			raw = quantize(typ, v)
		}
		if err := w.WriteTensor(bytes.NewReader(raw)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	qf, err := gguf.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	return dst, qf
}

package testfixture

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/x448/float16"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/tensor"
)

// QuantizedFileType is the general.file_type (llama.cpp's llama_ftype) a
// quantized fixture declares: 7 (MOSTLY_Q8_0) for Q8_0 and 15 (MOSTLY_Q4_K_M,
// Ollama's usual download) for Q4_K. Our Q4_K fixtures hold only Q4_K
// weights, where llama.cpp's Q4_K_M would keep some in Q6_K; the number only
// labels the file (Ollama shows it as details.quantization_level).
func QuantizedFileType(t gguf.TensorType) (uint32, error) {
	switch t {
	case gguf.TypeQ8_0:
		return 7, nil
	case gguf.TypeQ4_K:
		return 15, nil
	}
	return 0, fmt.Errorf("testfixture: cannot quantize to %s (only Q8_0 and Q4_K)", t)
}

// WriteQuantizedGGUF writes the same model as WriteArchGGUF(b, path) (so for
// llama and qwen2 the same as b.WriteGGUF) with its 2-D weights (token_embd,
// output, attn_*, ffn_*) quantized to t, gguf.TypeQ8_0 or gguf.TypeQ4_K;
// norms and biases stay F32 and general.file_type says
// QuantizedFileType(t). Each weight's rows (its In) must be a whole number
// of t's blocks: 32 for Q8_0, 256 for Q4_K (use TinyLlamaWide).
func WriteQuantizedGGUF(b Base, path string, t gguf.TensorType) error {
	if _, err := QuantizedFileType(t); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "testfixture-f32-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	src := filepath.Join(tmp, "f32.gguf")
	if err := WriteArchGGUF(b, src); err != nil {
		return err
	}
	return QuantizeGGUF(src, path, t)
}

// QuantizeGGUF rewrites the F32 GGUF model at src as dst with every 2-D F32
// tensor quantized to t (Q8_0 or Q4_K) and general.file_type set to match;
// other metadata, tensor order and 1-D tensors are copied unchanged.
func QuantizeGGUF(src, dst string, t gguf.TensorType) error {
	ftype, err := QuantizedFileType(t)
	if err != nil {
		return err
	}
	f, err := gguf.ReadFile(src)
	if err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()

	kv := make([]gguf.KV, 0, len(f.KV)+1)
	seen := false
	for _, e := range f.KV {
		if e.Key == "general.file_type" {
			e.Value, seen = ftype, true
		}
		kv = append(kv, e)
	}
	if !seen {
		kv = append(kv, gguf.KV{Key: "general.file_type", Value: ftype})
	}
	out := make([]gguf.Tensor, len(f.Tensors))
	for i, ti := range f.Tensors {
		out[i] = ti
		if ti.Type != gguf.TypeF32 {
			return fmt.Errorf("testfixture: %s is %s, not F32", ti.Name, ti.Type)
		}
		if len(ti.Shape) == 2 && strings.HasSuffix(ti.Name, ".weight") {
			if ti.Shape[0]%t.BlockSize() != 0 {
				return fmt.Errorf("testfixture: %s has rows of %d, not a multiple of the %s block size %d", ti.Name, ti.Shape[0], t, t.BlockSize())
			}
			out[i].Type = t
		}
	}
	return writeFileAtomic(dst, func(w *os.File) error {
		gw, err := gguf.NewWriter(w, kv, out)
		if err != nil {
			return err
		}
		for i, ti := range f.Tensors {
			sec, err := f.Section(in, ti)
			if err != nil {
				return err
			}
			raw, err := io.ReadAll(sec)
			if err != nil {
				return err
			}
			if out[i].Type != ti.Type {
				v, err := tensor.Decode(tensor.F32, raw)
				if err != nil {
					return err
				}
				if raw, err = Quantize(t, v); err != nil {
					return fmt.Errorf("%s: %w", ti.Name, err)
				}
			}
			if err := gw.WriteTensor(bytesReader(raw)); err != nil {
				return err
			}
		}
		return gw.Close()
	})
}

// Quantize encodes v as ggml blocks of type t: Q8_0 (34-byte blocks of 32)
// or Q4_K (144-byte super-blocks of 256). len(v) must be a whole number of
// blocks. quant.Dequantize reads the result back.
func Quantize(t gguf.TensorType, v []float32) ([]byte, error) {
	var elems, size int
	var enc func(dst []byte, x []float32)
	switch t {
	case gguf.TypeQ8_0:
		elems, size, enc = 32, 34, quantQ8_0
	case gguf.TypeQ4_K:
		elems, size, enc = 256, 144, quantQ4_K
	default:
		return nil, fmt.Errorf("testfixture: cannot quantize to %s (only Q8_0 and Q4_K)", t)
	}
	if len(v)%elems != 0 {
		return nil, fmt.Errorf("testfixture: %d values are not a whole number of %s blocks of %d", len(v), t, elems)
	}
	for _, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return nil, fmt.Errorf("testfixture: cannot quantize %v", x)
		}
	}
	out := make([]byte, len(v)/elems*size)
	for i := 0; i < len(v)/elems; i++ {
		enc(out[i*size:(i+1)*size], v[i*elems:(i+1)*elems])
	}
	return out, nil
}

// toHalf rounds x to IEEE half precision, returning its bits and value.
func toHalf(x float32) (uint16, float32) {
	h := float16.Fromfloat32(x)
	return h.Bits(), h.Float32()
}

func roundInt(x float32) int { return int(math.RoundToEven(float64(x))) }

func clampInt(v, lo, hi int) int { return min(max(v, lo), hi) }

// quantQ8_0 encodes 32 values: an f16 scale d = max|x|/127, then each value
// as the int8 nearest to x/d (using d as stored, so the error is at most d/2).
func quantQ8_0(dst []byte, x []float32) {
	var amax float32
	for _, v := range x {
		amax = max(amax, float32(math.Abs(float64(v))))
	}
	bits, d := toHalf(amax / 127)
	binary.LittleEndian.PutUint16(dst, bits)
	for j, v := range x {
		q := 0
		if d != 0 {
			q = clampInt(roundInt(v/d), -127, 127)
		}
		dst[2+j] = byte(int8(q))
	}
}

// fitAffine4 finds scale s ≥ 0 and offset m ≤ 0 so that s·q + m, with
// q = round((x-m)/s) in 0..15, is close to the 32 values x in the weighted
// least-squares sense. It tries a few grids spanning [min(x,0), max(x)] and
// refits s and m to each grid's levels.
func fitAffine4(x, w []float32) (s, m float32) {
	lo, hi := float32(0), x[0]
	for _, v := range x {
		lo, hi = min(lo, v), max(hi, v)
	}
	if hi == lo {
		return 0, lo
	}
	errOf := func(s, m float32) float32 {
		var e float32
		for i, v := range x {
			q := 0
			if s > 0 {
				q = clampInt(roundInt((v-m)/s), 0, 15)
			}
			diff := s*float32(q) + m - v
			e += w[i] * diff * diff
		}
		return e
	}
	bestS, bestM := (hi-lo)/15, lo
	best := errOf(bestS, bestM)
	var q [32]float32
	for step := -10; step <= 10; step++ {
		inv := (15 + 0.1*float32(step)) / (hi - lo)
		var sw, sq, sqq, sx, sxq float32
		for i, v := range x {
			q[i] = float32(clampInt(roundInt(inv*(v-lo)), 0, 15))
			sw += w[i]
			sq += w[i] * q[i]
			sqq += w[i] * q[i] * q[i]
			sx += w[i] * v
			sxq += w[i] * v * q[i]
		}
		det := sw*sqq - sq*sq
		if det <= 0 {
			continue
		}
		cs := (sw*sxq - sx*sq) / det
		cm := (sqq*sx - sq*sxq) / det
		if cm > 0 { // the format only subtracts: fit s alone with m = 0
			cm, cs = 0, sxq/sqq
		}
		if cs <= 0 {
			continue
		}
		if e := errOf(cs, cm); e < best {
			best, bestS, bestM = e, cs, cm
		}
	}
	return bestS, bestM
}

// quantQ4_K encodes 256 values as one Q4_K super-block: 8 sub-blocks of 32,
// each y = d·sc·q - dmin·mn with 4-bit q and 6-bit sc, mn; d and dmin are
// f16. Layout: d, dmin, scales[12], qs[128] (see lora's dequantizer).
func quantQ4_K(dst []byte, x []float32) {
	var scales, mins [8]float32
	var maxScale, maxMin float32
	w := make([]float32, 32)
	for j := range 8 {
		sub := x[32*j : 32*j+32]
		var ss float32
		for _, v := range sub {
			ss += v * v
		}
		rms := float32(math.Sqrt(float64(ss / 32)))
		for i, v := range sub {
			w[i] = rms + float32(math.Abs(float64(v))) // favour large weights
		}
		s, m := fitAffine4(sub, w)
		scales[j], mins[j] = s, -m
		maxScale, maxMin = max(maxScale, scales[j]), max(maxMin, mins[j])
	}
	dBits, d := toHalf(maxScale / 63)
	mBits, dmin := toHalf(maxMin / 63)
	binary.LittleEndian.PutUint16(dst[0:], dBits)
	binary.LittleEndian.PutUint16(dst[2:], mBits)

	var ls, lm [8]int
	for j := range 8 {
		if d > 0 {
			ls[j] = clampInt(roundInt(scales[j]/d), 0, 63)
		}
		if dmin > 0 {
			lm[j] = clampInt(roundInt(mins[j]/dmin), 0, 63)
		}
	}
	sc := dst[4:16]
	clear(sc)
	for j := range 8 {
		if j < 4 {
			sc[j] = byte(ls[j])
			sc[j+4] = byte(lm[j])
		} else {
			sc[j+4] = byte(ls[j]&0x0f | (lm[j]&0x0f)<<4)
			sc[j-4] |= byte(ls[j]>>4) << 6
			sc[j] |= byte(lm[j]>>4) << 6
		}
	}

	// Quantize against the scales as stored.
	var q [256]byte
	for j := range 8 {
		step := d * float32(ls[j])
		off := dmin * float32(lm[j])
		if step == 0 {
			continue
		}
		for i := range 32 {
			q[32*j+i] = byte(clampInt(roundInt((x[32*j+i]+off)/step), 0, 15))
		}
	}
	qs := dst[16:144]
	for c := range 4 {
		for l := range 32 {
			qs[32*c+l] = q[64*c+l] | q[64*c+32+l]<<4
		}
	}
}

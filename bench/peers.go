package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/ollamatest"
	"github.com/adapterd/adapterd/internal/quant"
	"github.com/adapterd/adapterd/internal/testfixture"
)

// peersBase is the llama the peers scenario merges into: rows of 1024 and
// 2816 (multiples of 256), so Q4_K_M gives real k-quants.
func peersBase(quick bool) testfixture.Base {
	b := testfixture.Base{Arch: "llama", Layers: 8, Embd: 1024, Heads: 16, KVHeads: 8, FF: 2816, Ctx: 256, Seed: 6}
	if quick {
		b.Layers = 2
	}
	return b
}

// execChild runs a peer tool as the child of a fresh, small bench process
// and prints its wall time and peak RSS. The tool's ru_maxrss includes the
// high-water mark of the process that started it (see daemon.stop), so
// that process must be small; this bench, which holds tensors, is not.
func execChild(args []string) int {
	t := time.Now()
	cmd := exec.Command(args[0], args[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	d := time.Since(t)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n%s", args[0], err, out.String())
		return 1
	}
	json.NewEncoder(os.Stdout).Encode(childResult{Seconds: d.Seconds(), HWM: maxRSS(cmd.ProcessState)})
	return 0
}

// tool runs a peer tool through execChild.
func (b *bench) tool(args ...string) (time.Duration, int64, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, 0, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), childEnv+"=exec")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return 0, 0, fmt.Errorf("%s: %v: %s", filepath.Base(args[0]), err, tailText(stderr.String(), 2000))
	}
	var r childResult
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		return 0, 0, fmt.Errorf("exec child output %q: %v", stdout.String(), err)
	}
	return time.Duration(r.Seconds * float64(time.Second)), r.HWM, nil
}

func tailText(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// measured is one way of producing a merged model.
type measured struct {
	times []time.Duration
	rss   int64
	size  int64
	path  string
}

// tensors reads every tensor of a GGUF file, dequantized to float32, and
// keeps the raw bytes too.
type tensors struct {
	f   *gguf.File
	raw map[string][]byte
}

func readTensors(path string) (*tensors, error) {
	f, err := gguf.ReadFile(path)
	if err != nil {
		return nil, err
	}
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	t := &tensors{f: f, raw: map[string][]byte{}}
	for _, ti := range f.Tensors {
		sec, err := f.Section(fh, ti)
		if err != nil {
			return nil, err
		}
		if t.raw[ti.Name], err = io.ReadAll(sec); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func (t *tensors) floats(name string) ([]float32, error) {
	ti, ok := t.f.Tensor(name)
	if !ok {
		return nil, fmt.Errorf("no tensor %s", name)
	}
	return quant.Dequantize(ti.Type, t.raw[name], int(ti.Elements()))
}

// writeF32 writes the GGUF at src with every tensor dequantized to F32:
// the float input of the float64 reference merge.
func writeF32(src, dst string) error {
	t, err := readTensors(src)
	if err != nil {
		return err
	}
	kv := slices.Clone(t.f.KV)
	for i := range kv {
		if kv[i].Key == "general.file_type" {
			kv[i].Value = uint32(0)
		}
	}
	ts := slices.Clone(t.f.Tensors)
	for i := range ts {
		ts[i].Type = gguf.TypeF32
	}
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer out.Close()
	w, err := gguf.NewWriter(out, kv, ts)
	if err != nil {
		return err
	}
	for _, ti := range t.f.Tensors {
		x, err := t.floats(ti.Name)
		if err != nil {
			return err
		}
		raw, err := quant.Quantize(gguf.TypeF32, x)
		if err != nil {
			return err
		}
		if err := w.WriteTensor(bytes.NewReader(raw)); err != nil {
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	return out.Close()
}

func rms(a []float32, ref []float32) float64 {
	var s float64
	for i := range a {
		d := float64(a[i]) - float64(ref[i])
		s += d * d
	}
	return math.Sqrt(s / float64(len(a)))
}

// accuracy compares an output with the float64 reference and the base.
type accuracy struct {
	mergedRMS    []float64 // per merged tensor, vs the reference
	deltaRMS     []float64 // per merged tensor, the delta itself
	unmerged     int       // 2-D tensors the adapter does not touch
	identical    int       // of those, byte-identical to the base
	unmergedRMS  []float64 // per unmerged 2-D tensor, vs the base's values
	typesChanged []string
}

func compare(outPath string, ref, base *tensors, merged map[string]bool) (accuracy, error) {
	var a accuracy
	out, err := readTensors(outPath)
	if err != nil {
		return a, err
	}
	for _, ti := range base.f.Tensors {
		if len(ti.Shape) < 2 {
			continue
		}
		ot, ok := out.f.Tensor(ti.Name)
		if !ok {
			return a, fmt.Errorf("%s has no %s", outPath, ti.Name)
		}
		x, err := out.floats(ti.Name)
		if err != nil {
			return a, err
		}
		if merged[ti.Name] {
			r, err := ref.floats(ti.Name)
			if err != nil {
				return a, err
			}
			w, err := base.floats(ti.Name)
			if err != nil {
				return a, err
			}
			a.mergedRMS = append(a.mergedRMS, rms(x, r))
			a.deltaRMS = append(a.deltaRMS, rms(r, w))
			continue
		}
		a.unmerged++
		if ot.Type != ti.Type {
			a.typesChanged = append(a.typesChanged, ti.Name)
		}
		if bytes.Equal(out.raw[ti.Name], base.raw[ti.Name]) {
			a.identical++
		}
		w, err := base.floats(ti.Name)
		if err != nil {
			return a, err
		}
		a.unmergedRMS = append(a.unmergedRMS, rms(x, w))
	}
	return a, nil
}

func maxF(xs []float64) float64 {
	m := 0.0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

func rmsText(xs []float64) string {
	if len(xs) == 0 {
		return "–"
	}
	return fmt.Sprintf("median %.3g, max %.3g", medianF(xs), maxF(xs))
}

// peers is scenario 6: adapterd's merge against llama.cpp's own tools, on
// the same base and adapter files, in the same run: llama-export-lora (the
// merge llama.cpp ships) and, for a quantized base, the pipeline users run
// to get back to the base's size: llama-export-lora, then llama-quantize
// --allow-requantize to the base's preset. Accuracy is measured against
// the float64 reference merge (testfixture.WriteReferenceMerge) of the
// same adapter into the base's own (dequantized) values.
func (b *bench) peers() error {
	exportLoRA, err := ollamatest.TestbedBinary("llama-export-lora")
	if err != nil {
		return fmt.Errorf("llama-export-lora: %v; run scripts/testbed.sh", err)
	}
	quantize, err := ollamatest.TestbedBinary("llama-quantize")
	if err != nil {
		return fmt.Errorf("llama-quantize: %v; run scripts/testbed.sh", err)
	}
	dir := filepath.Join(b.root, "peers")
	os.MkdirAll(dir, 0o755)
	defer os.RemoveAll(dir)
	base := peersBase(b.opt.quick)
	f32 := filepath.Join(dir, "base-f32.gguf")
	if err := base.WriteGGUF(f32); err != nil {
		return err
	}
	fx := mergeAdapter(base, b.nextSeed())
	adPath := filepath.Join(dir, "adapter.gguf")
	if err := fx.WriteGGUF(adPath); err != nil {
		return err
	}
	adFile, err := gguf.ReadFile(adPath)
	if err != nil {
		return err
	}
	merged := map[string]bool{}
	for _, ti := range adFile.Tensors {
		if n, ok := strings.CutSuffix(ti.Name, ".lora_a"); ok {
			merged[n] = true
		}
	}
	threads := strconv.Itoa(runtime.NumCPU())
	for _, preset := range []string{"F16", "Q4_K_M"} {
		basePath := filepath.Join(dir, "base-"+preset+".gguf")
		if _, _, err := b.tool(quantize, f32, basePath, preset, threads); err != nil {
			return err
		}
		bi, err := os.Stat(basePath)
		if err != nil {
			return err
		}
		// The reference: the adapter merged in float64 into the base's own
		// values, dequantized.
		deq := filepath.Join(dir, "deq.gguf")
		refPath := filepath.Join(dir, "ref.gguf")
		if err := writeF32(basePath, deq); err != nil {
			return err
		}
		if err := testfixture.WriteReferenceMerge(deq, fx, refPath); err != nil {
			return err
		}
		os.Remove(deq)
		ref, err := readTensors(refPath)
		if err != nil {
			return err
		}
		os.Remove(refPath)
		bt, err := readTensors(basePath)
		if err != nil {
			return err
		}

		runs := map[string]*measured{}
		run := func(name string, f func(out string) (time.Duration, int64, error)) error {
			m := runs[name]
			if m == nil {
				m = &measured{path: filepath.Join(dir, name+".gguf")}
				runs[name] = m
			}
			d, r, err := f(m.path)
			if err != nil {
				return err
			}
			m.times = append(m.times, d)
			m.rss = max(m.rss, r)
			fi, err := os.Stat(m.path)
			if err != nil {
				return err
			}
			m.size = fi.Size()
			logf("peers %s run %d: %-22s %s RSS %s, %s", preset, len(m.times), name, secs(d), mib(r), sizeText(m.size))
			return nil
		}
		exportRun := func(out string) (time.Duration, int64, error) {
			return b.tool(exportLoRA, "-m", basePath, "--lora", adPath, "-o", out, "-t", threads)
		}
		for i := 0; i < b.opt.runs; i++ {
			// merge: merged tensors as F16 (F32 stays F32), like llama-export-lora.
			if err := run("adapterd-merge", func(out string) (time.Duration, int64, error) { return b.child("merge", basePath, adPath, out) }); err != nil {
				return err
			}
			if err := run("export-lora", exportRun); err != nil {
				return err
			}
			if preset == "F16" {
				continue
			}
			// merge + requantize: merged tensors back into their base
			// types, everything else copied.
			if err := run("adapterd-merge-base", func(out string) (time.Duration, int64, error) {
				return b.child("merge-base", basePath, adPath, out)
			}); err != nil {
				return err
			}
			if err := run("pipeline", func(out string) (time.Duration, int64, error) {
				tmp := out + ".f16"
				defer os.Remove(tmp)
				d1, r1, err := exportRun(tmp)
				if err != nil {
					return 0, 0, err
				}
				d2, r2, err := b.tool(quantize, "--allow-requantize", tmp, out, preset, threads)
				return d1 + d2, max(r1, r2), err
			}); err != nil {
				return err
			}
		}
		acc := map[string]accuracy{}
		for name, m := range runs {
			if acc[name], err = compare(m.path, ref, bt, merged); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			os.Remove(m.path)
		}
		os.Remove(basePath)

		add := func(sec, ours, peer, oursLabel string) {
			o, p := runs[ours], runs[peer]
			ao, ap := acc[ours], acc[peer]
			b.res.add(row{section: sec, what: "wall time (" + oursLabel + ")", value: medText(o.times),
				peer: peerLabel(peer), peerVal: medText(p.times), ratio: ratioText(ratio(median(o.times), median(p.times))) + " time"})
			b.res.add(row{section: sec, what: "peak RSS", value: mib(o.rss), peer: peerLabel(peer), peerVal: mib(p.rss),
				ratio: ratioText(float64(o.rss) / float64(p.rss))})
			b.res.add(row{section: sec, what: fmt.Sprintf("output size (base %s)", sizeText(bi.Size())), value: sizeText(o.size),
				peer: peerLabel(peer), peerVal: sizeText(p.size), ratio: ratioText(float64(o.size) / float64(p.size))})
			b.res.add(row{section: sec, what: fmt.Sprintf("RMS error per merged tensor vs the float64 reference (%d tensors; the delta itself: %s)", len(ao.mergedRMS), rmsText(ao.deltaRMS)),
				value: rmsText(ao.mergedRMS), peer: peerLabel(peer), peerVal: rmsText(ap.mergedRMS)})
			b.res.add(row{section: sec, what: fmt.Sprintf("unmerged 2-D tensors byte-identical to the base (of %d)", ao.unmerged),
				value: strconv.Itoa(ao.identical), peer: peerLabel(peer), peerVal: strconv.Itoa(ap.identical),
				target: "all", met: yesNo(ao.identical == ao.unmerged)})
			b.res.add(row{section: sec, what: "RMS change of the unmerged 2-D tensors vs the base (the reference leaves them as they are)",
				value: rmsText(ao.unmergedRMS), peer: peerLabel(peer), peerVal: rmsText(ap.unmergedRMS)})
			if len(ap.typesChanged) > 0 || len(ao.typesChanged) > 0 {
				b.res.note("6 (%s base): unmerged tensors whose type changed: adapterd %d, %s %d", preset, len(ao.typesChanged), peer, len(ap.typesChanged))
			}
		}
		desc := fmt.Sprintf("a %s llama base (%d layers, width %d, %s) and a rank-16 q/k/v/o GGUF LoRA", preset, base.Layers, base.Embd, sizeText(bi.Size()))
		if preset == "F16" {
			add("6a. Merge vs llama-export-lora: "+desc, "adapterd-merge", "export-lora", "`lora.Merge`: merged tensors F16")
		} else {
			add("6b. Merge vs llama-export-lora: "+desc, "adapterd-merge", "export-lora", "`lora.Merge`: merged tensors F16")
			add("6c. Merge + requantize to the base's preset vs llama-export-lora then llama-quantize: "+desc,
				"adapterd-merge-base", "pipeline", "`lora.MergeWith`: merged tensors back into their base types")
		}
	}
	b.res.note("6 runs every tool in a child process started by a small child of the bench (so its peak RSS is its own, plus at most that small process's), with %s threads (`-t`) for llama.cpp's tools and GOMAXPROCS workers for adapterd. Bases are made from the same F32 model by llama-quantize. The reference merges the adapter in float64 into the base's dequantized values; an unmerged tensor's reference is the base's own value.", threads)
	return nil
}

func peerLabel(name string) string {
	switch name {
	case "export-lora":
		return "`llama-export-lora`"
	case "pipeline":
		return "`llama-export-lora` then `llama-quantize --allow-requantize` to the preset"
	}
	return name
}

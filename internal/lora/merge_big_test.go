package lora_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/lora"
	"github.com/adapterd/adapterd/internal/testfixture"
)

// The ≥ 1 GiB Q4_K_M benchmark of issue 11. It writes about 9 GB under
// TMPDIR (an F32 base, deleted once it is quantized) and takes minutes, so
// it runs only when asked:
//
//	ADAPTERD_BENCH_BIG=1 go test -run '^$' -bench BenchmarkMergeBigQ4KM -benchtime 1x -timeout 2h ./internal/lora/
//
// ADAPTERD_BENCH_BIG_LAYERS sets the layer count (default 30: 1.02 GiB).
// ADAPTERD_BENCH_BIG_DIR keeps the bases in that folder and reuses them, so
// that another build (say, the commit before a change) can be timed on the
// same files; ADAPTERD_BENCH_BIG_OPS then picks operations by row name
// (copy, f16, base, base1, f16-1, small).
// Each operation runs in its own child process (this test binary, running
// TestMergeBigChild), which reports its wall time and its own peak RSS
// (VmHWM), so one operation's memory is never another's.
const (
	bigEnv      = "ADAPTERD_BENCH_BIG"
	bigChildEnv = "ADAPTERD_BENCH_BIG_CHILD"
)

// bigBase is shaped like Llama 3.2 1B (width 2048, FF 8192, 32 heads, 8 KV
// heads), with the fixture's small vocabulary.
func bigBase(layers int) testfixture.Base {
	return testfixture.Base{Arch: "llama", Layers: layers, Embd: 2048, Heads: 32, KVHeads: 8, FF: 8192, Ctx: 4096, Seed: 11}
}

type bigResult struct {
	Op       string  `json:"op"`
	Seconds  float64 `json:"seconds"`
	BytesOut int64   `json:"bytes_out"`
	HWM      int64   `json:"hwm"`
	Merged   int     `json:"merged"`
	CPU      float64 `json:"-"` // the child's user+system time, all of it (set by bigRun)
}

// writeBigBase writes a Q4_K_M base of the given layers into dir, the way
// people get one: an F32 model quantized by the q4_K_M preset (internal/quant,
// bit-identical to v0.24.0's quantize on the same floats), streamed through
// MergeWith with a zero delta. It returns the base's path and an all-linear
// rank-16 PEFT adapter folder for it.
func writeBigBase(b *testing.B, dir string, layers int) (basePath, adapterDir string) {
	base := bigBase(layers)
	f32 := filepath.Join(dir, "f32.gguf")
	if err := base.WriteGGUF(f32); err != nil {
		b.Fatal(err)
	}
	defer os.Remove(f32)
	bf := must(gguf.ReadFile(f32))
	in := must(os.Open(f32))
	defer in.Close()
	basePath = filepath.Join(dir, "base-q4km.gguf")
	out := must(os.Create(basePath))
	bw := bufio.NewWriterSize(out, 1<<20)
	zero := &lora.Weights{Arch: "llama", Deltas: []lora.Delta{{
		Target: "blk.0.attn_q.weight", Rank: 1, In: base.Embd, Out: base.Embd,
		A: make([]float32, base.Embd), B: make([]float32, base.Embd), Scale: 1,
	}}}
	if _, err := lora.MergeWith(bw, in, bf, zero, lora.MergeOptions{Quantize: must(lora.ParseQuantize("q4_K_M"))}); err != nil {
		b.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := out.Close(); err != nil {
		b.Fatal(err)
	}
	adapterDir = filepath.Join(dir, "adapter")
	fx := testfixture.LoRA{Base: base, Seed: 12, Rank: 16, Alpha: 32, Targets: allTargets}
	if err := fx.WritePEFT(adapterDir); err != nil {
		b.Fatal(err)
	}
	return basePath, adapterDir
}

// bigRun runs op in a child: "copy", or "merge:<quantize>:<workers>".
func bigRun(b *testing.B, op, basePath, adapterDir, outPath string) bigResult {
	defer os.Remove(outPath)
	cmd := exec.Command(os.Args[0], "-test.run=^TestMergeBigChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), bigChildEnv+"="+strings.Join([]string{op, basePath, adapterDir, outPath}, "|"))
	outb, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("%s: %v\n%s", op, err, outb)
	}
	for line := range strings.Lines(string(outb)) {
		if s, ok := strings.CutPrefix(strings.TrimSpace(line), "big-result: "); ok {
			var r bigResult
			if err := json.Unmarshal([]byte(s), &r); err != nil {
				b.Fatal(err)
			}
			r.CPU = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
			return r
		}
	}
	b.Fatalf("%s: no result\n%s", op, outb)
	return bigResult{}
}

func loadavg() string {
	raw, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func BenchmarkMergeBigQ4KM(b *testing.B) {
	if os.Getenv(bigEnv) == "" {
		b.Skip("set " + bigEnv + "=1: writes about 9 GB under TMPDIR and takes minutes")
	}
	layers := 30
	if s := os.Getenv("ADAPTERD_BENCH_BIG_LAYERS"); s != "" {
		layers = must(strconv.Atoi(s))
	}
	for b.Loop() {
		bigBench(b, layers)
	}
}

// bigBases returns the base and adapter in dir, writing them unless a
// previous run left them there.
func bigBases(b *testing.B, dir string, layers int) (basePath, adapterDir string) {
	basePath, adapterDir = filepath.Join(dir, "base-q4km.gguf"), filepath.Join(dir, "adapter")
	if _, err := os.Stat(filepath.Join(adapterDir, "adapter_config.json")); err == nil {
		return basePath, adapterDir
	}
	return writeBigBase(b, dir, layers)
}

func bigBench(b *testing.B, layers int) {
	dir := os.Getenv("ADAPTERD_BENCH_BIG_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	sel := os.Getenv("ADAPTERD_BENCH_BIG_OPS")
	want := func(op string) bool { return sel == "" || slices.Contains(strings.Split(sel, ","), op) }
	t0 := time.Now()
	basePath, adapterDir := bigBases(b, filepath.Join(dir, fmt.Sprint(layers)), layers)
	baseSize := must(os.Stat(basePath)).Size()
	b.Logf("base: %d layers, Q4_K_M, %d B (%.3f GiB), written in %v", layers, baseSize, float64(baseSize)/(1<<30), time.Since(t0).Round(time.Second))
	if layers >= 30 && baseSize < 1<<30 {
		b.Fatalf("base is %d B, under 1 GiB", baseSize)
	}
	smallBase, smallAdapter := bigBases(b, filepath.Join(dir, "2"), 2)
	out := filepath.Join(dir, "out.gguf")
	var rows []string
	row := func(what string, r bigResult, size int64, vs string) {
		rows = append(rows, fmt.Sprintf("| %s | %.2f s | %.2f s | %.0f MB/s | %.4f× | %.1f MiB | %s | %s |",
			what, r.Seconds, r.CPU, float64(size)/r.Seconds/1e6, float64(r.BytesOut)/float64(size), float64(r.HWM)/(1<<20), vs, loadavg()))
	}
	var f16, q2, f161 bigResult
	if want("copy") {
		cp := bigRun(b, "copy", basePath, adapterDir, out)
		row("plain copy of the base (io.Copy)", cp, baseSize, "")
	}
	if want("f16") {
		f16 = bigRun(b, "merge:f16:2", basePath, adapterDir, out)
		row("F16 merge (`quantize: f16`), 2 workers", f16, baseSize, "1×")
	}
	if want("base") {
		q2 = bigRun(b, "merge::2", basePath, adapterDir, out)
		row("merge + requantize to the base's types, 2 workers", q2, baseSize, fmt.Sprintf("**%.2f×** (CPU %.2f×)", q2.Seconds/f16.Seconds, q2.CPU/f16.CPU))
	}
	if want("f16-1") {
		f161 = bigRun(b, "merge:f16:1", basePath, adapterDir, out)
		row("F16 merge, 1 worker", f161, baseSize, fmt.Sprintf("%.2f× (2 workers: %.2f× faster)", f161.Seconds/f16.Seconds, f161.Seconds/f16.Seconds))
	}
	if want("base1") {
		q1 := bigRun(b, "merge::1", basePath, adapterDir, out)
		row("merge + requantize to the base's types, 1 worker", q1, baseSize, fmt.Sprintf("%.2f× (2 workers: %.2f× faster); vs the F16 merge with 1 worker: %.2f×", q1.Seconds/f16.Seconds, q1.Seconds/q2.Seconds, q1.Seconds/f161.Seconds))
	}
	if want("small") {
		smallSize := must(os.Stat(smallBase)).Size()
		sq := bigRun(b, "merge::2", smallBase, smallAdapter, out)
		row(fmt.Sprintf("2-layer base (%.0f MB): merge + requantize, 2 workers", float64(smallSize)/1e6), sq, smallSize, "")
		sf := bigRun(b, "merge:f16:2", smallBase, smallAdapter, out)
		row(fmt.Sprintf("2-layer base (%.0f MB): F16 merge, 2 workers", float64(smallSize)/1e6), sf, smallSize, "")
	}
	// Printed, not logged: the testing package cuts a benchmark's log
	// after a few lines.
	fmt.Printf("merged %d tensors; GOMAXPROCS %d\n| operation | wall time | CPU time (whole child) | MB/s of base | output / base | peak RSS | time vs F16 merge | load average after |\n|---|---|---|---|---|---|---|---|\n%s\n",
		q2.Merged, runtime.GOMAXPROCS(0), strings.Join(rows, "\n"))
	if q2.Seconds > 0 && f16.Seconds > 0 {
		b.ReportMetric(q2.Seconds/f16.Seconds, "requant/f16")
	}
}

// TestMergeBigChild is one operation of BenchmarkMergeBigQ4KM, in its own
// process; it does nothing unless the benchmark started it.
func TestMergeBigChild(t *testing.T) {
	arg := os.Getenv(bigChildEnv)
	if arg == "" {
		t.Skip("runs only as BenchmarkMergeBigQ4KM's child")
	}
	f := strings.Split(arg, "|")
	op, basePath, adapterDir, outPath := f[0], f[1], f[2], f[3]
	in := must(os.Open(basePath))
	defer in.Close()
	out := must(os.Create(outPath))
	r := bigResult{Op: op}
	var start time.Time
	if op == "copy" {
		start = time.Now()
		r.BytesOut = must(io.Copy(out, in))
	} else {
		parts := strings.Split(op, ":") // merge:<quantize>:<workers>
		bf := must(gguf.ReadFile(basePath))
		a := must(lora.ReadPEFT(adapterDir, baseInfo(t, bf)))
		q := must(lora.ParseQuantize(parts[1]))
		workers := must(strconv.Atoi(parts[2]))
		start = time.Now()
		bw := bufio.NewWriterSize(out, 1<<20)
		st, err := lora.MergeWith(bw, in, bf, a, lora.MergeOptions{Quantize: q, Workers: workers})
		if err == nil {
			err = bw.Flush()
		}
		if err != nil {
			t.Fatal(err)
		}
		r.BytesOut, r.Merged = st.BytesOut, st.Merged
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	r.Seconds = time.Since(start).Seconds()
	r.HWM = vmHWM(t)
	fmt.Printf("big-result: %s\n", must(json.Marshal(r)))
}

func vmHWM(t *testing.T) int64 {
	raw := must(os.ReadFile("/proc/self/status"))
	for line := range strings.Lines(string(raw)) {
		if s, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb := must(strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(s), " kB"), 10, 64))
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/self/status")
	return 0
}

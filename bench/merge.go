package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/lora"
	"github.com/adapterd/adapterd/internal/testfixture"
)

// childEnv names the env var that makes this binary run one timed
// operation as a child process, so its peak RSS is its own.
const childEnv = "ADAPTERD_BENCH_CHILD"

type childResult struct {
	Seconds float64 `json:"seconds"`
	Bytes   int64   `json:"bytes"`
	HWM     int64   `json:"hwm"` // the child's own VmHWM, bytes
}

// runChild runs one operation: copy | copy-user | merge | merge-sha |
// merge-base (args: base adapter out), or exec (args: a peer tool and its
// arguments; see execChild).
func runChild(mode string, args []string) int {
	if mode == "exec" {
		return execChild(args)
	}
	if len(args) != 3 {
		fmt.Fprintln(os.Stderr, "child: want base adapter out")
		return 2
	}
	base, adapter, outPath := args[0], args[1], args[2]
	t := time.Now()
	n, err := childOp(mode, base, adapter, outPath)
	d := time.Since(t)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	json.NewEncoder(os.Stdout).Encode(childResult{Seconds: d.Seconds(), Bytes: n, HWM: vmHWM(os.Getpid())})
	return 0
}

func childOp(mode, base, adapter, outPath string) (int64, error) {
	in, err := os.Open(base)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.Create(outPath)
	if err != nil {
		return 0, err
	}
	var n int64
	switch mode {
	case "copy": // plain io.Copy of two *os.File: copy_file_range on Linux
		n, err = io.Copy(out, in)
	case "copy-user": // the same through a 1 MiB user-space buffer
		n, err = io.CopyBuffer(struct{ io.Writer }{out}, struct{ io.Reader }{in}, make([]byte, 1<<20))
	case "merge", "merge-sha", "merge-base":
		var st os.FileInfo
		if st, err = in.Stat(); err != nil {
			break
		}
		var gf *gguf.File
		if gf, err = gguf.Read(in, st.Size()); err != nil {
			break
		}
		var ad *lora.Weights
		if ad, err = lora.ReadGGUF(adapter); err != nil {
			break
		}
		var w io.Writer = out
		var bw *bufio.Writer
		if mode == "merge-sha" {
			// What adapterd's writeTemp does: hash while writing.
			bw = bufio.NewWriterSize(io.MultiWriter(out, sha256.New()), 1<<20)
			w = bw
		}
		var ms lora.MergeStats
		if mode == "merge-base" { // merged tensors back into their base types
			ms, err = lora.MergeWith(w, in, gf, ad, lora.MergeOptions{})
		} else {
			ms, err = lora.Merge(w, in, gf, ad)
		}
		if err == nil && bw != nil {
			err = bw.Flush()
		}
		n = ms.BytesOut
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// child runs one operation in a child process and returns its wall time as
// the child measured it and its peak RSS.
func (b *bench) child(mode, base, adapter, out string) (time.Duration, int64, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, 0, err
	}
	cmd := exec.Command(exe, base, adapter, out)
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return 0, 0, fmt.Errorf("%s child: %v: %s", mode, err, stderr.String())
	}
	var r childResult
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		return 0, 0, fmt.Errorf("%s child output %q: %v", mode, stdout.String(), err)
	}
	return time.Duration(r.Seconds * float64(time.Second)), r.HWM, nil
}

// bigBase returns a llama base of at least minBytes in F32.
func bigBase(minBytes int64) (testfixture.Base, int64) {
	b := testfixture.Base{Arch: "llama", Embd: 2048, Heads: 16, KVHeads: 8, FF: 5632, Ctx: 256, Seed: 1}
	for l := 1; ; l++ {
		b.Layers = l
		if s := estimateSize(b); s >= minBytes {
			return b, s
		}
	}
}

func estimateSize(b testfixture.Base) int64 {
	var per int64
	for _, m := range b.Modules() {
		per += int64(m.In * m.Out)
	}
	per += 2 * int64(b.Embd) // norms
	vocab := int64(288)
	return 4 * (int64(b.Layers)*per + 2*int64(b.Embd)*vocab + int64(b.Embd))
}

func mergeAdapter(base testfixture.Base, seed uint64) testfixture.LoRA {
	return testfixture.LoRA{Base: base, Seed: seed, Rank: 16, Alpha: 32, Std: 0.01,
		Targets: []string{"q_proj", "k_proj", "v_proj", "o_proj"}}
}

func dropCaches() error {
	exec.Command("sync").Run()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200)
}

func mbps(size int64, d time.Duration) float64 {
	return float64(size) / 1e6 / d.Seconds()
}

// merge is scenario 5.
func (b *bench) merge() error {
	dir := filepath.Join(b.root, "merge")
	os.MkdirAll(dir, 0o755)
	defer os.RemoveAll(dir)
	base, _ := bigBase(int64(b.opt.mergeGiB * (1 << 30)))
	basePath := filepath.Join(dir, "base.gguf")
	logf("merge: writing a %d-layer F32 llama base", base.Layers)
	t := time.Now()
	if err := base.WriteGGUF(basePath); err != nil {
		return err
	}
	fi, err := os.Stat(basePath)
	if err != nil {
		return err
	}
	size := fi.Size()
	logf("merge: base is %s (%d bytes), written in %s", sizeText(size), size, secs(time.Since(t)))
	adPath := filepath.Join(dir, "adapter.gguf")
	if err := mergeAdapter(base, b.nextSeed()).WriteGGUF(adPath); err != nil {
		return err
	}
	adInfo, _ := os.Stat(adPath)

	// (a) In-process: merge vs copy, interleaved, warm page cache (the base
	// was just written; 23 GiB RAM holds it), output removed after each run.
	out := filepath.Join(dir, "out.gguf")
	modes := []string{"copy", "copy-user", "merge", "merge-sha"}
	times := map[string][]time.Duration{}
	rss := map[string]int64{}
	for i := 0; i < b.opt.runs; i++ {
		for _, m := range modes {
			d, r, err := b.child(m, basePath, adPath, out)
			if err != nil {
				return err
			}
			os.Remove(out)
			times[m] = append(times[m], d)
			rss[m] = max(rss[m], r)
			logf("merge (a) run %d: %-9s %s  %.0f MB/s  RSS %s", i, m, secs(d), mbps(size, d), mib(r))
		}
	}
	cold := map[string]time.Duration{}
	if b.opt.dropCache {
		for _, m := range []string{"copy", "merge"} {
			if err := dropCaches(); err != nil {
				b.res.note("could not drop the page cache (%v); cold runs skipped", err)
				break
			}
			d, _, err := b.child(m, basePath, adPath, out)
			if err != nil {
				return err
			}
			os.Remove(out)
			cold[m] = d
			logf("merge (a) cold: %-9s %s  %.0f MB/s", m, secs(d), mbps(size, d))
		}
	}
	// Memory must not grow with the model: the same merge on a 1-layer base.
	small := base
	small.Layers = 1
	smallPath := filepath.Join(dir, "small.gguf")
	smallAd := filepath.Join(dir, "small-adapter.gguf")
	var smallRSS, smallSize int64
	if err := small.WriteGGUF(smallPath); err == nil {
		if err := mergeAdapter(small, b.nextSeed()).WriteGGUF(smallAd); err == nil {
			if _, r, err := b.child("merge", smallPath, smallAd, out); err == nil {
				smallRSS = r
				fi, _ := os.Stat(smallPath)
				smallSize = fi.Size()
			}
		}
	}
	os.Remove(out)
	os.Remove(smallPath)
	os.Remove(smallAd)

	sec := fmt.Sprintf("5a. In-process merge throughput: `lora.Merge` of a rank-16 q/k/v/o adapter (%s) into a %s F32 base (%d layers, width 2048)",
		sizeText(adInfo.Size()), sizeText(size), base.Layers)
	mm, mc := median(times["merge"]), median(times["copy"])
	b.res.add(row{section: sec, what: "`lora.Merge` to a temp file, warm cache",
		value: fmt.Sprintf("%.0f MB/s (%s)", mbps(size, mm), medText(times["merge"])),
		peer:  "`io.Copy` of the base file to a temp file (copy_file_range), warm cache", peerVal: fmt.Sprintf("%.0f MB/s (%s)", mbps(size, mc), medText(times["copy"])),
		ratio: ratioText(ratio(mm, mc)) + " time"})
	mu := median(times["copy-user"])
	b.res.add(row{section: sec, what: "`lora.Merge`, warm cache",
		value: fmt.Sprintf("%.0f MB/s", mbps(size, mm)),
		peer:  "user-space copy through a 1 MiB buffer, warm cache", peerVal: fmt.Sprintf("%.0f MB/s (%s)", mbps(size, mu), medText(times["copy-user"])),
		ratio: ratioText(ratio(mm, mu)) + " time"})
	ms := median(times["merge-sha"])
	b.res.add(row{section: sec, what: "`lora.Merge` + sha256 while writing (what adapterd's writeTemp does), warm cache",
		value: fmt.Sprintf("%.0f MB/s (%s)", mbps(size, ms), medText(times["merge-sha"])),
		peer:  "`lora.Merge` alone", peerVal: fmt.Sprintf("%.0f MB/s", mbps(size, mm)), ratio: ratioText(ratio(ms, mm)) + " time"})
	if cm, ok := cold["merge"]; ok {
		cc := cold["copy"]
		b.res.add(row{section: sec, what: "`lora.Merge`, cold (page cache dropped before the run, 1 run)",
			value: fmt.Sprintf("%.0f MB/s (%s)", mbps(size, cm), secs(cm)),
			peer:  "`io.Copy`, cold (page cache dropped, 1 run)", peerVal: fmt.Sprintf("%.0f MB/s (%s)", mbps(size, cc), secs(cc)),
			ratio: ratioText(ratio(cm, cc)) + " time"})
	}
	b.res.add(row{section: sec, what: "peak RSS of a process doing only the merge",
		value: fmt.Sprintf("%s (%.1f%% of the base)", mib(rss["merge"]), 100*float64(rss["merge"])/float64(size)),
		peer:  fmt.Sprintf("same merge into a 1-layer base (%s)", sizeText(smallSize)), peerVal: mib(smallRSS),
		ratio: ratioText(float64(rss["merge"]) / float64(smallRSS)), target: "does not grow with the base",
		met: yesNo(smallRSS > 0 && float64(rss["merge"]) < 1.5*float64(smallRSS)+32<<20)})
	b.res.add(row{section: sec, what: "peak RSS of a process doing only the io.Copy", value: mib(rss["copy"])})
	b.res.note("5a runs each operation in a child process of the bench (so its peak RSS is its own) and times it inside the child, from opening the files (including reading the GGUF headers and the adapter) to closing the output; output is not fsynced and is deleted after each run. Warm runs: the base was just written and stays in the page cache. Cold runs: `sync; echo 3 > /proc/sys/vm/drop_caches` before each.")

	// (b) End to end through the real binary.
	return b.mergeEndToEnd(dir, base, basePath, size)
}

func (b *bench) mergeEndToEnd(dir string, base testfixture.Base, basePath string, size int64) error {
	ctx := context.Background()
	const bigName = "big-llama:base"
	t := time.Now()
	if err := b.srv.ImportGGUF(ctx, bigName, basePath); err != nil {
		return fmt.Errorf("importing the big base: %w", err)
	}
	importDur := time.Since(t)
	logf("merge (b): imported %s (%s) through the API in %s", bigName, sizeText(size), secs(importDur))

	// Peer: what a user does without adapterd once a merged GGUF exists:
	// `ollama create` FROM that file (hash, upload, create). The merged file
	// is made in-process from another adapter, so the server never has it.
	peerAd := filepath.Join(dir, "peer-adapter.gguf")
	peerMerged := filepath.Join(dir, "peer-merged.gguf")
	if err := mergeAdapter(base, b.nextSeed()).WriteGGUF(peerAd); err != nil {
		return err
	}
	mergeDur, _, err := b.child("merge", basePath, peerAd, peerMerged)
	if err != nil {
		return err
	}
	mf := filepath.Join(dir, "Modelfile")
	writeModelfile(mf, peerMerged, "")
	cliDur, err := b.cliCreate("bench-merged-cli", mf)
	if err != nil {
		return err
	}
	logf("merge (b): peer: in-process merge %s + ollama create FROM merged.gguf %s", secs(mergeDur), secs(cliDur))
	b.deleteModel("bench-merged-cli")
	os.Remove(peerMerged)
	os.Remove(peerAd)

	cfg := daemonConfig{drop: filepath.Join(dir, "drop"), state: filepath.Join(dir, "state"), settle: time.Second, workers: 2,
		base: tinyBase, extra: "remove_grace: 1s\n"}
	d, err := b.startDaemon("merge", cfg)
	if err != nil {
		return err
	}
	if err := b.warmUp(d, cfg.drop); err != nil {
		d.stop()
		return err
	}
	key := "merge-big"
	tmp := filepath.Join(cfg.drop, "."+key+".partial")
	os.MkdirAll(tmp, 0o755)
	if err := mergeAdapter(base, b.nextSeed()).WriteGGUF(filepath.Join(tmp, "lora.gguf")); err != nil {
		d.stop()
		return err
	}
	os.WriteFile(filepath.Join(tmp, "adapter.yaml"), []byte("base: "+bigName+"\nstrategy: merge\nmodel: bench-merge\n"), 0o644)
	fd := filepath.Join(cfg.drop, key)
	mark := b.srv.Mark()
	t0 := time.Now()
	if err := os.Rename(tmp, fd); err != nil {
		d.stop()
		return err
	}
	t1, err := waitStatusReady(d, fd, statusPoll, 10*time.Minute)
	if err != nil {
		d.stop()
		return fmt.Errorf("%v; log tail:\n%s", err, tail(d.logPath, 10))
	}
	total := t1.Sub(t0)
	after := total - cfg.settle
	time.Sleep(20 * time.Millisecond)
	st := stateTimes(d.logPath, key, t0.Add(-time.Second))
	uploaded, _ := d.metric("adapterd_uploaded_bytes_total")
	strategy := readStatusFileStrategy(fd)
	rss, err := d.stop()
	if err != nil {
		return err
	}
	b.srv.Mark()
	server := b.serverTimes(mark)
	logf("merge (b): adapterd after settle %s, RSS %s; Ollama: %s", secs(after), mib(rss), serverTimesText(server, 6))

	sec := fmt.Sprintf("5b. Merge end to end: the real adapterd binary, `strategy: merge`, a rank-16 GGUF LoRA on the %s base", sizeText(size))
	peer := mergeDur + cliDur
	b.res.add(row{section: sec, what: "drop → ready, after settle (T1−T0−settle); strategy in status: " + strategy,
		value: secs(after), peer: "in-process `lora.Merge` to a file + `ollama create` FROM that file (CLI)",
		peerVal: fmt.Sprintf("%s (%s + %s)", secs(peer), secs(mergeDur), secs(cliDur)), ratio: ratioText(ratio(after, peer))})
	if ti, ok := st["ingesting"]; ok {
		if tr, ok := st["ready"]; ok {
			b.res.add(row{section: sec, what: "from adapterd's log: settle end → `ingesting` (scan, validate, hash the adapter)", value: secs(ti.Sub(t0.Add(cfg.settle)))})
			b.res.add(row{section: sec, what: "from adapterd's log: `ingesting` → `ready` (merge + hash, upload, create, copy)", value: secs(tr.Sub(ti))})
		}
	}
	b.res.add(row{section: sec, what: "bytes uploaded by adapterd (the merged model)", value: sizeText(int64(uploaded))})
	for i, e := range server {
		if i == 3 {
			break
		}
		b.res.add(row{section: sec, what: "Ollama's own time in " + e.endpoint + " during this ingest (from its log)",
			value: fmt.Sprintf("%s over %d requests", secs(e.total), e.n)})
	}
	b.res.add(row{section: sec, what: "importing the same base once through the API (hash + upload + create `files`)", value: secs(importDur)})
	b.res.add(row{section: "4. Peak RSS of the adapterd process", what: "merge of a rank-16 adapter into the " + sizeText(size) + " base (end to end)",
		value:  fmt.Sprintf("%s (%.1f%% of the base size)", mib(rss), 100*float64(rss)/float64(size)),
		target: "< 25% of the base size", met: yesNo(float64(rss) < 0.25*float64(size))})
	return nil
}

func readStatusFileStrategy(dir string) string {
	return readStatusFile(dir).Strategy
}

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/adapterd/adapterd/internal/blob"
	"github.com/adapterd/adapterd/internal/testfixture"
)

// latencyState is what the ingest scenario leaves for the re-check one: a
// drop dir and state dir whose only folder is one ready 256 MiB adapter.
type latencyState struct {
	drop, state string
	key         string
	file        string
	size        int64
}

const (
	statusPoll = 2 * time.Millisecond
	readyPoll  = 5 * time.Millisecond
)

func (b *bench) latencyConfig() daemonConfig {
	dir := filepath.Join(b.root, "lat")
	return daemonConfig{drop: filepath.Join(dir, "drop"), state: filepath.Join(dir, "state"),
		settle: time.Second, workers: 2, base: tinyBase, extra: "remove_grace: 1s\n"}
}

// writeTiny writes a few-KB GGUF LoRA folder for the tiny base.
func writeTiny(dir string, seed uint64, sidecar string) error {
	a := testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: seed, Targets: []string{"q_proj"}}
	if err := a.WriteGGUF(filepath.Join(dir, "lora.gguf")); err != nil {
		return err
	}
	if sidecar != "" {
		return os.WriteFile(filepath.Join(dir, "adapter.yaml"), []byte(sidecar), 0o644)
	}
	return nil
}

// warmUp drops one tiny folder into a fresh daemon and waits for it and for
// /readyz: the watcher is then in place and the daemon's per-server caches
// (version, base details) are filled, as in a long-running daemon. The
// folder is then removed and forgotten (remove_grace 1s), and its model
// deleted, so the timed runs start from a drop dir without it.
func (b *bench) warmUp(d *daemon, drop string) error {
	key := fmt.Sprintf("warm-%d", b.nextSeed())
	tmp := filepath.Join(drop, "."+key+".partial")
	os.MkdirAll(tmp, 0o755)
	if err := writeTiny(tmp, b.seed, ""); err != nil {
		return err
	}
	dir := filepath.Join(drop, key)
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	if _, err := d.waitReady(readyPoll, 60*time.Second); err != nil {
		return err
	}
	if _, err := waitStatusReady(d, dir, 20*time.Millisecond, 60*time.Second); err != nil {
		return err
	}
	os.RemoveAll(dir)
	time.Sleep(1500 * time.Millisecond) // remove_grace: 1s
	return b.deleteModel(key)
}

func (b *bench) deleteModel(name string) error {
	err := b.srv.Client.Delete(context.Background(), &api.DeleteRequest{Model: name})
	if err != nil {
		return fmt.Errorf("deleting model %s: %w", name, err)
	}
	return nil
}

// cliCreate times `ollama create NAME -f Modelfile` as a user would run it.
func (b *bench) cliCreate(name, modelfile string) (time.Duration, error) {
	cmd := exec.Command(b.cli, "create", name, "-f", modelfile)
	cmd.Env = append(os.Environ(), "OLLAMA_HOST="+b.srv.Addr, "HOME="+b.srv.Home, "OLLAMA_NOHISTORY=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t := time.Now()
	err := cmd.Run()
	d := time.Since(t)
	if err != nil {
		return 0, fmt.Errorf("ollama create %s: %v: %s", name, err, lastLine(out.String()))
	}
	return d, nil
}

func lastLine(s string) string {
	s = string(bytes.TrimSpace([]byte(s)))
	if i := bytes.LastIndexByte([]byte(s), '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func writeModelfile(path, from, adapter string) error {
	text := "FROM " + from + "\n"
	if adapter != "" {
		text += "ADAPTER " + adapter + "\n"
	}
	return os.WriteFile(path, []byte(text), 0o644)
}

// cliRun writes a fresh (never seen by the server) adapter of size and
// times the CLI creating a model from it; the model and file are removed.
func (b *bench) cliRun(size int64, name string) (time.Duration, error) {
	dir := filepath.Join(b.root, "cli", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "lora.gguf")
	if err := testfixture.Sized(testfixture.TinyLlama(), size, b.nextSeed()).WriteGGUF(path); err != nil {
		return 0, err
	}
	mf := filepath.Join(dir, "Modelfile")
	if err := writeModelfile(mf, tinyBase, path); err != nil {
		return 0, err
	}
	d, err := b.cliCreate(name, mf)
	if err != nil {
		return 0, err
	}
	return d, b.deleteModel(name)
}

// adapterdRun is one timed drop: the folder is written as .key.partial and
// renamed to key at T0; T1 is when its status file says ready.
type adapterdRun struct {
	total      time.Duration // T1 - T0
	preIngest  time.Duration // settle end -> "ingesting" in the log (scan, validate, hash)
	ingesting  time.Duration // "ingesting" -> "ready" in the log (upload, create, copy)
	haveStages bool
	hashed     float64 // adapterd_hashed_bytes_total delta for this drop
	uploaded   float64 // adapterd_uploaded_bytes_total delta for this drop
	fileSize   int64
}

// counters reads the hashed and uploaded byte counters.
func (d *daemon) counters() (float64, float64) {
	h, _ := d.metric("adapterd_hashed_bytes_total")
	u, _ := d.metric("adapterd_uploaded_bytes_total")
	return h, u
}

// settledCounters waits until the byte counters stop moving (work started
// during settle may still finish after the status says ready) and returns
// them.
func (d *daemon) settledCounters() (float64, float64) {
	h, u := d.counters()
	for same, deadline := 0, time.Now().Add(10*time.Second); same < 3 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		h2, u2 := d.counters()
		if h2 == h && u2 == u {
			same++
		} else {
			same = 0
		}
		h, u = h2, u2
	}
	return h, u
}

func (b *bench) adapterdDrop(d *daemon, drop, key string, size int64, settle time.Duration) (adapterdRun, string, error) {
	var r adapterdRun
	tmp := filepath.Join(drop, "."+key+".partial")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return r, "", err
	}
	if err := testfixture.Sized(testfixture.TinyLlama(), size, b.nextSeed()).WriteGGUF(filepath.Join(tmp, "lora.gguf")); err != nil {
		return r, "", err
	}
	if fi, err := os.Stat(filepath.Join(tmp, "lora.gguf")); err == nil {
		r.fileSize = fi.Size()
	}
	dir := filepath.Join(drop, key)
	h0, u0 := d.counters()
	t0 := time.Now()
	if err := os.Rename(tmp, dir); err != nil {
		return r, "", err
	}
	t1, err := waitStatusReady(d, dir, statusPoll, 5*time.Minute)
	if err != nil {
		return r, dir, err
	}
	r.total = t1.Sub(t0)
	h1, u1 := d.settledCounters()
	r.hashed, r.uploaded = h1-h0, u1-u0
	// Log timestamps: let the log catch up, then read the state changes.
	time.Sleep(20 * time.Millisecond)
	st := stateTimes(d.logPath, key, t0.Add(-time.Second))
	if ti, ok := st["ingesting"]; ok {
		if tr, ok := st["ready"]; ok {
			r.preIngest = ti.Sub(t0.Add(settle))
			r.ingesting = tr.Sub(ti)
			r.haveStages = true
		}
	}
	return r, dir, nil
}

// ingestCase is one series of scenario 1.
type ingestCase struct {
	size   int64
	settle time.Duration
	cli    bool // measure the CLI peer too (else reuse the last series' CLI runs)
}

// ingestLatency is scenario 1: per adapter size, the CLI and adapterd
// alternate, each on a fresh adapter. A last series repeats 256 MiB with
// adapterd's default settle (5s) against the CLI runs of the series before.
func (b *bench) ingestLatency() (*latencyState, error) {
	cases := []ingestCase{{1 << 20, time.Second, true}, {256 << 20, time.Second, true}, {256 << 20, 5 * time.Second, false}}
	var keep *latencyState
	var cli []time.Duration
	for ci, c := range cases {
		cfg := b.latencyConfig()
		cfg.settle = c.settle
		size := c.size
		label := sizeText(size)
		if c.settle != time.Second {
			label += ", settle " + secs(c.settle)
		}
		d, err := b.startDaemon(fmt.Sprintf("ingest-%dm-settle%s", size>>20, c.settle), cfg)
		if err != nil {
			return nil, err
		}
		if err := b.warmUp(d, cfg.drop); err != nil {
			d.stop()
			return nil, err
		}
		if c.cli {
			cli = nil
		}
		var total, after, pre, ing []time.Duration
		var hashed, uploaded []float64
		var fileSize int64
		for i := 0; i < b.opt.runs; i++ {
			last := ci == len(cases)-1 && i == b.opt.runs-1
			runCLI := func() error {
				if !c.cli {
					return nil
				}
				name := fmt.Sprintf("cli-%dm-%d", size>>20, i)
				dt, err := b.cliRun(size, name)
				if err != nil {
					return err
				}
				cli = append(cli, dt)
				logf("ingest %s run %d: ollama create %s", label, i, secs(dt))
				return nil
			}
			runAdapterd := func() error {
				key := fmt.Sprintf("lat-%dm-%d-%d", size>>20, ci, i)
				r, dir, err := b.adapterdDrop(d, cfg.drop, key, size, cfg.settle)
				if err != nil {
					return fmt.Errorf("%v; adapterd log tail:\n%s", err, tail(d.logPath, 10))
				}
				total = append(total, r.total)
				fileSize = r.fileSize
				hashed = append(hashed, r.hashed)
				uploaded = append(uploaded, r.uploaded)
				after = append(after, r.total-cfg.settle)
				if r.haveStages {
					pre = append(pre, r.preIngest)
					ing = append(ing, r.ingesting)
				}
				logf("ingest %s run %d: adapterd T1-T0 %s, after settle %s (pre-ingest %s, ingesting %s), hashed %.0f B, uploaded %.0f B",
					label, i, secs(r.total), secs(r.total-cfg.settle), secs(r.preIngest), secs(r.ingesting), r.hashed, r.uploaded)
				if last {
					keep = &latencyState{drop: cfg.drop, state: cfg.state, key: key, file: filepath.Join(dir, "lora.gguf"), size: size}
					return nil
				}
				os.RemoveAll(dir)
				return b.deleteModel(key)
			}
			// Alternate who goes first, so slow drift of the shared
			// machine's load does not always favour one side.
			first, second := runCLI, runAdapterd
			if i%2 == 1 {
				first, second = runAdapterd, runCLI
			}
			if err := first(); err != nil {
				d.stop()
				return nil, err
			}
			if err := second(); err != nil {
				d.stop()
				return nil, err
			}
		}
		if c.cli && size >= 64<<20 {
			if err := b.stepBreakdown(size); err != nil {
				b.res.note("step breakdown failed: %v", err)
			}
		}
		// Let removed folders pass remove_grace so the state holds only
		// the kept folder, then stop and read the peak RSS.
		time.Sleep(1500 * time.Millisecond)
		rss, err := d.stop()
		if err != nil {
			return nil, err
		}
		sec := "1. Ingest latency after settle vs `ollama create` (cold, fresh adapter per run)"
		mc, ma := median(cli), median(after)
		peer := "`ollama create` (CLI, whole command)"
		if !c.cli {
			peer = "`ollama create`, the runs of the series above"
		}
		x := row{section: sec, what: label + " GGUF LoRA: latency after settle (T1−T0−settle)",
			value: medText(after), peer: peer, peerVal: medText(cli),
			ratio: ratioText(ratio(ma, mc))}
		if size >= 256<<20 && c.settle == time.Second {
			x.target, x.met = "≤ 0.75×", yesNo(ratio(ma, mc) <= 0.75)
		}
		b.res.add(x)
		b.res.add(row{section: sec, what: label + ": total T1−T0 (includes settle " + secs(cfg.settle) + ")",
			value: medText(total), peer: "`ollama create`", peerVal: secs(mc), ratio: ratioText(ratio(median(total), mc))})
		if len(pre) > 0 {
			b.res.add(row{section: sec, what: label + ": from adapterd's log: settle end → `ingesting` (scan, validate, hash)",
				value: medText(pre)})
			b.res.add(row{section: sec, what: label + ": from adapterd's log: `ingesting` → `ready` (upload, create, show, copy, delete)",
				value: medText(ing)})
		}
		fi := float64(fileSize)
		b.res.add(row{section: sec, what: label + ": bytes adapterd hashed / uploaded per drop, as multiples of the file size (metrics deltas)",
			value: fmt.Sprintf("%.2f× / %.2f×", medianF(hashed)/fi, medianF(uploaded)/fi), target: "1× / 1×",
			met: yesNo(medianF(hashed) <= fi*1.01 && medianF(uploaded) <= fi*1.01)})
		b.res.add(row{section: "4. Peak RSS of the adapterd process", what: "ingest daemon, " + label + " adapters (" + fmt.Sprint(b.opt.runs) + " drops + warm-up)",
			value: mib(rss)})
	}
	return keep, nil
}

// stepBreakdown times, in this process, the API steps adapterd's native
// ingest does for one fresh adapter of size: where the time goes.
func (b *bench) stepBreakdown(size int64) error {
	ctx := context.Background()
	c := b.srv.Client
	var hash, upload, create, show, list, cp, del []time.Duration
	for i := 0; i < b.opt.runs; i++ {
		dir := filepath.Join(b.root, "steps")
		os.MkdirAll(dir, 0o755)
		path := filepath.Join(dir, "lora.gguf")
		if err := testfixture.Sized(testfixture.TinyLlama(), size, b.nextSeed()).WriteGGUF(path); err != nil {
			return err
		}
		t := time.Now()
		digest, err := blob.FileDigest(path)
		if err != nil {
			return err
		}
		hash = append(hash, time.Since(t))
		t = time.Now()
		if _, err := blob.Upload(ctx, c, path, digest); err != nil {
			return err
		}
		upload = append(upload, time.Since(t))
		tmp := fmt.Sprintf("adapterd-tmp-steps%d", i)
		name := fmt.Sprintf("steps-%d", i)
		stream := false
		t = time.Now()
		if err := c.Create(ctx, &api.CreateRequest{Model: tmp, From: tinyBase, Adapters: map[string]string{"adapter.gguf": digest}, Stream: &stream},
			func(api.ProgressResponse) error { return nil }); err != nil {
			return err
		}
		create = append(create, time.Since(t))
		t = time.Now()
		if _, err := c.Show(ctx, &api.ShowRequest{Model: tmp}); err != nil {
			return err
		}
		show = append(show, time.Since(t))
		t = time.Now()
		if _, err := c.List(ctx); err != nil {
			return err
		}
		list = append(list, time.Since(t))
		t = time.Now()
		if err := c.Copy(ctx, &api.CopyRequest{Source: tmp, Destination: name}); err != nil {
			return err
		}
		cp = append(cp, time.Since(t))
		t = time.Now()
		if err := c.Delete(ctx, &api.DeleteRequest{Model: tmp}); err != nil {
			return err
		}
		del = append(del, time.Since(t))
		b.deleteModel(name)
		os.RemoveAll(dir)
	}
	sec := "1b. Where the time goes: adapterd's native steps for one fresh " + sizeText(size) + " adapter, timed one by one in the bench process"
	for _, s := range []struct {
		what string
		ds   []time.Duration
	}{
		{"sha256 of the file (blob.FileDigest)", hash},
		{"HEAD + POST /api/blobs (blob.Upload)", upload},
		{"POST /api/create from+adapters, temp name", create},
		{"POST /api/show", show},
		{"GET /api/tags", list},
		{"POST /api/copy to the user's name", cp},
		{"DELETE temp model", del},
	} {
		b.res.add(row{section: sec, what: s.what, value: medText(s.ds)})
	}
	var sum time.Duration
	for _, ds := range [][]time.Duration{hash, upload, create, show, list, cp, del} {
		sum += median(ds)
	}
	b.res.add(row{section: sec, what: "sum of the medians", value: secs(sum)})
	return nil
}

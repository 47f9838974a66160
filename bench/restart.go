package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/adapterd/adapterd/internal/status"
)

// restartResult is one measured daemon start on an already synced drop dir.
type restartResult struct {
	toReady          time.Duration // process start -> first /readyz 200
	hashed, uploaded float64       // adapterd_*_bytes_total of the new process
	creates, blobs   int           // POST /api/create, HEAD+POST /api/blobs seen by Ollama
	states           map[status.State]int
	rss              int64
	server           []endpointTime // Ollama's logged requests during the restart
	watching         time.Duration  // process start -> "watching drop dir" in adapterd's log
	cpu              time.Duration  // adapterd's user+system CPU over its whole run
}

// restartOnce starts adapterd on cfg, waits for /readyz (polled every
// 5 ms), reads its counters and statuses, stops it, and counts the requests
// Ollama logged meanwhile.
func (b *bench) restartOnce(name string, cfg daemonConfig) (restartResult, error) {
	var r restartResult
	mark := b.srv.Mark()
	d, err := b.startDaemon(name, cfg)
	if err != nil {
		return r, err
	}
	if r.toReady, err = d.waitReady(readyPoll, 2*time.Minute); err != nil {
		d.stop()
		return r, err
	}
	r.hashed, _ = d.metric("adapterd_hashed_bytes_total")
	r.uploaded, _ = d.metric("adapterd_uploaded_bytes_total")
	r.states, _ = d.countStates()
	if r.rss, err = d.stop(); err != nil {
		return r, err
	}
	r.cpu = d.cpu
	b.srv.Mark() // waits until Ollama's log has caught up
	r.server = b.serverTimes(mark)
	if t, ok := logMsgTime(d.logPath, "watching drop dir"); ok {
		r.watching = t.Sub(d.started)
	}
	r.creates = b.srv.Count(mark, "POST", "/api/create")
	r.blobs = b.srv.Count(mark, "POST", "/api/blobs") + b.srv.Count(mark, "HEAD", "/api/blobs")
	return r, nil
}

// tinyPeer is the restart peer: the same daemon and server with one
// unchanged few-KB adapter, so what the daemon costs by itself (exec,
// config, state, watcher, one reconcile) is measured in the same run.
type tinyPeer struct {
	cfg   daemonConfig
	runs  []time.Duration
	ready bool
}

func (b *bench) newTinyPeer() (*tinyPeer, error) {
	dir := filepath.Join(b.root, "tinypeer")
	p := &tinyPeer{cfg: daemonConfig{drop: filepath.Join(dir, "drop"), state: filepath.Join(dir, "state"),
		settle: time.Second, base: tinyBase}}
	fd := filepath.Join(p.cfg.drop, "t0")
	os.MkdirAll(fd, 0o755)
	if err := writeTiny(fd, b.nextSeed(), "model: bench-tinypeer\n"); err != nil {
		return nil, err
	}
	d, err := b.startDaemon("tinypeer-create", p.cfg)
	if err != nil {
		return nil, err
	}
	if _, err := waitStatusReady(d, fd, 20*time.Millisecond, 2*time.Minute); err != nil {
		d.stop()
		return nil, err
	}
	if _, err := d.stop(); err != nil {
		return nil, err
	}
	return p, nil
}

func (b *bench) peerRestart(p *tinyPeer) error {
	r, err := b.restartOnce("tinypeer-restart", p.cfg)
	if err != nil {
		return err
	}
	if r.states[status.Ready] != 1 {
		return fmt.Errorf("tiny peer restart: states %v", r.states)
	}
	p.runs = append(p.runs, r.toReady)
	logf("restart peer (1 tiny adapter): /readyz after %s", secs(r.toReady))
	return nil
}

// recheck is scenario 2: restart with one ready, unchanged 256 MiB folder.
func (b *bench) recheck(ls *latencyState) error {
	if ls == nil {
		return fmt.Errorf("needs the ingest scenario's ready 256 MiB folder (run without -only, or with -only ingest,recheck)")
	}
	peer, err := b.newTinyPeer()
	if err != nil {
		return err
	}
	cfg := b.latencyConfig()
	var ready, cli []time.Duration
	var maxHashed, maxUploaded float64
	var creates, blobs int
	var rss int64
	for i := 0; i < b.opt.runs; i++ {
		if err := b.peerRestart(peer); err != nil {
			return err
		}
		r, err := b.restartOnce("recheck", cfg)
		if err != nil {
			return err
		}
		if r.states[status.Ready] != 1 || len(r.states) != 1 {
			return fmt.Errorf("recheck restart: states %v, want the one folder ready", r.states)
		}
		if s := readStatusFile(filepath.Join(ls.drop, ls.key)); s.State != status.Ready {
			return fmt.Errorf("recheck: status file says %q", s.State)
		}
		ready = append(ready, r.toReady)
		maxHashed, maxUploaded = max(maxHashed, r.hashed), max(maxUploaded, r.uploaded)
		creates += r.creates
		blobs += r.blobs
		rss = max(rss, r.rss)
		logf("recheck run %d: /readyz after %s, hashed %.0f B, uploaded %.0f B, creates %d, blob requests %d",
			i, secs(r.toReady), r.hashed, r.uploaded, r.creates, r.blobs)

		// The CLI peer: `ollama create` on the same unchanged file. The
		// server already has the blob; the CLI hashes the file anyway.
		mf := filepath.Join(b.root, "recheck.Modelfile")
		if err := writeModelfile(mf, tinyBase, ls.file); err != nil {
			return err
		}
		name := fmt.Sprintf("cli-recheck-%d", i)
		dt, err := b.cliCreate(name, mf)
		if err != nil {
			return err
		}
		cli = append(cli, dt)
		logf("recheck run %d: ollama create on the unchanged file: %s", i, secs(dt))
		if err := b.deleteModel(name); err != nil {
			return err
		}
	}
	sec := "2. Re-checking an unchanged " + sizeText(ls.size) + " adapter (daemon restart)"
	b.res.add(row{section: sec, what: "bytes hashed by the restarted daemon (adapterd_hashed_bytes_total, max over runs)",
		value: fmt.Sprintf("%.0f B", maxHashed), target: "0", met: yesNo(maxHashed == 0)})
	b.res.add(row{section: sec, what: "bytes uploaded / Ollama POST /api/create / blob requests during the restarts",
		value: fmt.Sprintf("%.0f B / %d / %d", maxUploaded, creates, blobs), target: "0 / 0 / 0",
		met: yesNo(maxUploaded == 0 && creates == 0 && blobs == 0)})
	b.res.add(row{section: sec, what: "process start → /readyz 200, drop dir holding only the " + sizeText(ls.size) + " folder",
		value: medText(ready), peer: "same restart, drop dir holding one unchanged ~5 KB folder", peerVal: medText(peer.runs),
		ratio: ratioText(ratio(median(ready), median(peer.runs)))})
	b.res.add(row{section: sec, what: "re-check of the unchanged folder (restart-to-ready, an upper bound: it includes process start)",
		value: secs(median(ready)), peer: "`ollama create` again on the same unchanged file (re-hashes it)", peerVal: medText(cli),
		ratio: ratioText(ratio(median(ready), median(cli)))})
	b.res.add(row{section: "4. Peak RSS of the adapterd process", what: "restart re-checking the unchanged " + sizeText(ls.size) + " folder (max over runs)",
		value: mib(rss)})
	diff := median(ready) - median(peer.runs)
	diffText := fmt.Sprintf("The difference of the medians, %s, bounds the per-folder cost of the %s folder.", secs(diff), sizeText(ls.size))
	if diff <= 0 {
		diffText = fmt.Sprintf("The difference of the medians is %s: the %s folder's re-check costs nothing measurable next to a tiny folder's.", secs(diff), sizeText(ls.size))
	}
	b.res.note("Scenario 2 cannot observe one folder's re-check from outside (a re-check that changes nothing changes no status and logs nothing), so it reports restart-to-/readyz with only that folder in the drop dir, next to the same restart with one tiny folder. %s", diffText)
	b.peer = peer
	return nil
}

// manyAdapters is scenario 3: N tiny folders, first created, then a restart.
func (b *bench) manyAdapters() error {
	n := b.opt.many
	dir := filepath.Join(b.root, "many")
	cfg := daemonConfig{drop: filepath.Join(dir, "drop"), state: filepath.Join(dir, "state"), settle: time.Second, workers: 2, base: tinyBase}
	logf("many: writing %d adapter folders", n)
	for i := 0; i < n; i++ {
		fd := filepath.Join(cfg.drop, fmt.Sprintf("a%04d", i))
		os.MkdirAll(fd, 0o755)
		if err := writeTiny(fd, b.nextSeed(), fmt.Sprintf("model: bench-%d\n", i)); err != nil {
			return err
		}
	}
	// CLI peer for the first creation: the same tiny adapter through
	// `ollama create`, timed a few times and scaled to n. Ollama's cost per
	// request grows with the number of models it holds, so the CLI is timed
	// both on the nearly empty server and again once it holds the n models.
	cliBefore, err := b.cliTiny(max(3, b.opt.runs), "before")
	if err != nil {
		return err
	}

	logf("many: adapterd creating %d models (workers: 2)", n)
	createMark := b.srv.Mark()
	d, err := b.startDaemon("many-create", cfg)
	if err != nil {
		return err
	}
	t := time.Now()
	deadline := t.Add(20 * time.Minute)
	lastLog := t
	for {
		states, err := d.countStates()
		if err == nil {
			if states[status.Ready] == n {
				break
			}
			if states["invalid"]+states["conflict"] > 0 {
				d.stop()
				return fmt.Errorf("many: states %v", states)
			}
			if time.Since(lastLog) > 15*time.Second {
				logf("many: %v after %s", states, time.Since(t).Round(time.Second))
				lastLog = time.Now()
			}
		}
		if err := d.running(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			d.stop()
			return fmt.Errorf("many: not all %d ready within 20 min: %v", n, states)
		}
		time.Sleep(250 * time.Millisecond)
	}
	create := time.Since(t)
	createRSS, err := d.stop()
	if err != nil {
		return err
	}
	logf("many: %d models created in %s", n, secs(create))
	createServer := b.serverTimes(createMark)
	createErrors := logErrors(d.logPath)
	createCPU := d.cpu
	cliAfter, err := b.cliTiny(max(3, b.opt.runs), "after")
	if err != nil {
		return err
	}

	peer := b.peer
	if peer == nil {
		if peer, err = b.newTinyPeer(); err != nil {
			return err
		}
		b.peer = peer
	}
	peerStart := len(peer.runs)
	var ready []time.Duration
	var restarts []restartResult
	var creates, blobs int
	var hashed float64
	var rss int64
	for i := 0; i < b.opt.runs; i++ {
		if err := b.peerRestart(peer); err != nil {
			return err
		}
		r, err := b.restartOnce("many-restart", cfg)
		if err != nil {
			return err
		}
		if r.states[status.Ready] != n {
			return fmt.Errorf("many restart: states %v, want %d ready", r.states, n)
		}
		ready = append(ready, r.toReady)
		restarts = append(restarts, r)
		creates += r.creates
		blobs += r.blobs
		hashed = max(hashed, r.hashed)
		rss = max(rss, r.rss)
		logf("many restart %d: /readyz after %s (watcher up after %s), creates %d, blob requests %d, hashed %.0f B; Ollama: %s",
			i, secs(r.toReady), secs(r.watching), r.creates, r.blobs, r.hashed, serverTimesText(r.server, 4))
	}
	peerRuns := peer.runs[peerStart:]
	sec := fmt.Sprintf("3. Restart with %d unchanged adapters", n)
	b.res.add(row{section: sec, what: "process start → /readyz 200 (polled every 5 ms)",
		value: medText(ready), peer: "same restart with 1 unchanged tiny adapter", peerVal: medText(peerRuns),
		ratio: ratioText(ratio(median(ready), median(peerRuns))), target: "< 2 s", met: yesNo(median(ready) < 2*time.Second)})
	b.res.add(row{section: sec, what: "Ollama POST /api/create / blob requests during the restarts (all runs)",
		value: fmt.Sprintf("%d / %d", creates, blobs), target: "0 / 0", met: yesNo(creates == 0 && blobs == 0)})
	b.res.add(row{section: sec, what: "bytes hashed during the restart (max over runs)", value: fmt.Sprintf("%.0f B", hashed),
		target: "0", met: yesNo(hashed == 0)})
	per := create / time.Duration(n)
	cliPer := (median(cliBefore) + median(cliAfter)) / 2
	b.res.add(row{section: sec, what: fmt.Sprintf("first creation of all %d (workers: 2), from daemon start", n),
		value:   fmt.Sprintf("%s (%s per adapter)", secs(create), secs(per)),
		peer:    fmt.Sprintf("%d × `ollama create` of one tiny adapter, one at a time (per-create time: mean of the medians on the empty server and on the server holding the %d models)", n, n),
		peerVal: fmt.Sprintf("%s (%s each; empty server %s, full server %s)", secs(cliPer*time.Duration(n)), secs(cliPer), medText(cliBefore), medText(cliAfter)),
		ratio:   ratioText(ratio(create, cliPer*time.Duration(n)))})
	b.res.add(row{section: sec, what: "first creation: adapterd's own CPU (user+sys of the process)",
		value: fmt.Sprintf("%s (%s per adapter)", secs(createCPU), secs(createCPU/time.Duration(n)))})
	b.res.add(row{section: "4. Peak RSS of the adapterd process", what: fmt.Sprintf("first creation of %d adapters", n), value: mib(createRSS)})
	b.res.add(row{section: "4. Peak RSS of the adapterd process", what: fmt.Sprintf("restart with %d unchanged adapters (max over runs)", n), value: mib(rss)})
	var serverSum time.Duration
	for _, e := range createServer {
		serverSum += e.total
	}
	b.res.add(row{section: sec, what: "first creation: Ollama's own request time, summed over all requests (from its log)",
		value: fmt.Sprintf("%s in %d requests (wall time %s with 2 workers)", secs(serverSum), countReq(createServer), secs(create))})
	for i, e := range createServer {
		if i == 6 {
			break
		}
		b.res.add(row{section: sec, what: "first creation, Ollama time in " + e.endpoint,
			value: fmt.Sprintf("%s over %d requests (median %s, %.1f per adapter)", secs(e.total), e.n, secs(median(e.lat)), float64(e.n)/float64(n))})
	}
	if len(createErrors) > 0 {
		for i, e := range createErrors {
			if i == 4 {
				break
			}
			b.res.note("Scenario 3 first creation, adapterd's logged errors (retried with backoff): %s", e)
		}
	}
	for i, r := range restarts {
		b.res.note("Scenario 3 restart %d: /readyz after %s; watcher set up %s after process start; adapterd CPU (user+sys, whole process life) %s; Ollama requests: %s",
			i, secs(r.toReady), secs(r.watching), secs(r.cpu), serverTimesText(r.server, 5))
	}
	if fi, err := os.Stat(filepath.Join(cfg.state, "state.json")); err == nil {
		b.res.note("After scenario 3, adapterd's state.json is %s for %d adapters; it is rewritten (with fsync) on every state change.", sizeText(fi.Size()), n)
	}
	return nil
}

func countReq(ts []endpointTime) int {
	n := 0
	for _, e := range ts {
		n += e.n
	}
	return n
}

// cliTiny times `ollama create` of a fresh tiny adapter k times.
func (b *bench) cliTiny(k int, tag string) ([]time.Duration, error) {
	var out []time.Duration
	for i := 0; i < k; i++ {
		fd := filepath.Join(b.root, "cli", fmt.Sprintf("tiny-%s-%d", tag, i))
		os.MkdirAll(fd, 0o755)
		if err := writeTiny(fd, b.nextSeed(), ""); err != nil {
			return nil, err
		}
		mf := filepath.Join(fd, "Modelfile")
		if err := writeModelfile(mf, tinyBase, filepath.Join(fd, "lora.gguf")); err != nil {
			return nil, err
		}
		name := fmt.Sprintf("cli-tiny-%s-%d", tag, i)
		dt, err := b.cliCreate(name, mf)
		if err != nil {
			return nil, err
		}
		out = append(out, dt)
		b.deleteModel(name)
		os.RemoveAll(fd)
	}
	return out, nil
}

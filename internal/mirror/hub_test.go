package mirror_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/adapterd/adapterd/internal/hub"
	"github.com/adapterd/adapterd/internal/hub/hubtest"
	"github.com/adapterd/adapterd/internal/layout"
	"github.com/adapterd/adapterd/internal/metrics"
	"github.com/adapterd/adapterd/internal/mirror"
	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/testfixture"
)

// hubBed is one hub source on a fake hub (hubtest: the Hub cannot run
// here, and the official JS client validates the fake in internal/hub),
// with its own drop and state dirs.
type hubBed struct {
	t       *testing.T
	hub     *hubtest.Server
	drop    string
	state   string
	env     map[string]string
	reg     *prometheus.Registry
	metrics *metrics.Metrics
	src     spec.Source
}

const hubRepo = "org/support-bot-lora"

func newHubBed(t *testing.T, h *spec.HubSource) *hubBed {
	t.Helper()
	root := t.TempDir()
	b := &hubBed{t: t, hub: hubtest.New(t), drop: filepath.Join(root, "drop"), state: filepath.Join(root, "state"),
		reg: prometheus.NewRegistry()}
	b.metrics = metrics.New(b.reg, nil)
	// HF_HOME points at an empty folder: no token file of the machine's.
	b.env = map[string]string{"HF_ENDPOINT": b.hub.URL(), "HF_HOME": filepath.Join(root, "hf-home")}
	os.MkdirAll(b.drop, 0o755)
	if h.Revision == "" {
		h.Revision = "main"
	}
	if h.Key == "" {
		h.Key = "support-bot"
	}
	h.Repo, h.Interval = hubRepo, time.Hour
	b.src = spec.Source{Kind: spec.SourceHub, Hub: h}
	return b
}

func (b *hubBed) mirror() *mirror.Mirror {
	b.t.Helper()
	m, err := mirror.New(mirror.Options{Source: b.src, DropDir: b.drop, StateDir: b.state, Metrics: b.metrics,
		Getenv: func(k string) string { return b.env[k] }})
	if err != nil {
		b.t.Fatal(err)
	}
	return m
}

func (b *hubBed) poll(m *mirror.Mirror) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return m.Poll(ctx)
}

func (b *hubBed) pollOK(m *mirror.Mirror) {
	b.t.Helper()
	if err := b.poll(m); err != nil {
		b.t.Fatalf("poll: %v", err)
	}
}

// files lists the folder's files.
func (b *hubBed) files(key string) []string {
	b.t.Helper()
	ents, err := os.ReadDir(filepath.Join(b.drop, key))
	if err != nil {
		b.t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func (b *hubBed) record(key string) hub.Source {
	b.t.Helper()
	var s hub.Source
	data, err := os.ReadFile(filepath.Join(b.drop, key, layout.SourceFile))
	if err != nil {
		b.t.Fatal(err)
	}
	if err := json.Unmarshal(data, &s); err != nil {
		b.t.Fatal(err)
	}
	return s
}

// adapterFiles is a PEFT adapter's two files, made by testfixture.
func adapterFiles(t *testing.T, seed uint64) map[string][]byte {
	t.Helper()
	out, err := (testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: seed, Targets: []string{"v_proj"}}).PEFTFiles()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func plus(a map[string][]byte, extra map[string][]byte) map[string][]byte {
	out := map[string][]byte{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

func TestHubRepoIsMirroredWithItsSidecarAndRecord(t *testing.T) {
	b := newHubBed(t, &spec.HubSource{Sidecar: &spec.Sidecar{Model: "support-bot:v3", Base: "tiny-llama:base"}})
	commit := b.hub.Commit(hubRepo, "main", plus(adapterFiles(t, 1), map[string][]byte{
		"README.md": []byte("# bot"), "model.safetensors": []byte("full weights, never fetched"),
	}))
	m := b.mirror()
	b.pollOK(m)

	want := []string{layout.SourceFile, "adapter.yaml", layout.PEFTConfig, layout.PEFTWeights}
	if got := b.files("support-bot"); !slices.Equal(got, want) {
		t.Fatalf("folder holds %v, want %v", got, want)
	}
	if n := b.hub.Gets(hubRepo, "model.safetensors"); n != 0 {
		t.Errorf("full weights fetched %d times", n)
	}
	sc, err := spec.ReadSidecarFile(filepath.Join(b.drop, "support-bot", "adapter.yaml"))
	if err != nil || sc.Model != "support-bot:v3" || sc.Base != "tiny-llama:base" {
		t.Errorf("adapter.yaml from sidecar: %+v, %v", sc, err)
	}
	if r := b.record("support-bot"); r.Repo != hubRepo || r.Revision != "main" || r.Commit != commit {
		t.Errorf("source record %+v, want %s main %s", r, hubRepo, commit)
	}
	st := m.Status()
	if st.Kind != "hub" || st.Commit != commit || st.Folders != 1 || st.Error != "" || st.LastCheck.IsZero() || st.Source != "hf://"+hubRepo+"@main" {
		t.Errorf("status %+v", st)
	}
	if got := b.commitMetric(); got != commit {
		t.Errorf("adapterd_source_commit_info has commit %q, want %s", got, commit)
	}

	// Nothing new: one revision request, no file fetched again.
	before := b.hub.Gets(hubRepo, layout.PEFTWeights)
	b.pollOK(m)
	if n := b.hub.Gets(hubRepo, layout.PEFTWeights) - before; n != 0 {
		t.Errorf("an unchanged commit fetched the weights %d more times", n)
	}
}

// commitMetric is the commit label of the source's
// adapterd_source_commit_info, "" without one.
func (b *hubBed) commitMetric() string {
	b.t.Helper()
	mfs, err := b.reg.Gather()
	if err != nil {
		b.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "adapterd_source_commit_info" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["source"] == b.src.Name() && m.GetGauge().GetValue() == 1 {
				return labels["commit"]
			}
		}
	}
	return ""
}

// A new commit is mirrored at once (a commit is atomic), and a file whose
// hash did not change is copied from the folder in place, not fetched
// again, also by a restarted mirror.
func TestHubNewCommitFetchesOnlyChangedFiles(t *testing.T) {
	b := newHubBed(t, &spec.HubSource{Sidecar: &spec.Sidecar{Model: "support-bot:v3"}})
	v1, v2 := adapterFiles(t, 1), adapterFiles(t, 2)
	if string(v1[layout.PEFTConfig]) != string(v2[layout.PEFTConfig]) {
		t.Fatal("the two versions' adapter_config.json differ; the test needs one unchanged file")
	}
	b.hub.Commit(hubRepo, "main", v1)
	b.pollOK(b.mirror())
	c2 := b.hub.Commit(hubRepo, "main", v2)
	m := b.mirror() // a restart: the state file carries what was fetched
	b.pollOK(m)
	if n := b.hub.Gets(hubRepo, layout.PEFTConfig); n != 1 {
		t.Errorf("the unchanged %s was fetched %d times, want 1", layout.PEFTConfig, n)
	}
	if n := b.hub.Gets(hubRepo, layout.PEFTWeights); n != 2 {
		t.Errorf("the changed weights were fetched %d times, want 2", n)
	}
	got, err := os.ReadFile(filepath.Join(b.drop, "support-bot", layout.PEFTWeights))
	if err != nil || string(got) != string(v2[layout.PEFTWeights]) {
		t.Errorf("the folder does not hold the new weights (%v)", err)
	}
	if r := b.record("support-bot"); r.Commit != c2 || m.Status().Commit != c2 || b.commitMetric() != c2 {
		t.Errorf("record %+v, status %+v, want commit %s", r, m.Status(), c2)
	}

	// A repo that ships its own adapter.yaml keeps it: sidecar: is for
	// repos without one.
	b.hub.Commit(hubRepo, "main", plus(v2, map[string][]byte{"adapter.yaml": []byte("model: from-the-repo\n")}))
	b.pollOK(m)
	if sc, err := spec.ReadSidecarFile(filepath.Join(b.drop, "support-bot", "adapter.yaml")); err != nil || sc.Model != "from-the-repo" {
		t.Errorf("the repo's adapter.yaml: %+v, %v", sc, err)
	}
}

// A repo deleted upstream goes only when two polls in a row say so; one
// not-found followed by the repo back changes nothing.
func TestHubRepoDeletedUpstreamIsRemovedAtTheSecondNotFound(t *testing.T) {
	b := newHubBed(t, &spec.HubSource{})
	files := plus(adapterFiles(t, 1), map[string][]byte{"adapter.yaml": []byte("model: bot:v1\n")})
	b.hub.Commit(hubRepo, "main", files)
	m := b.mirror()
	b.pollOK(m)

	b.hub.DeleteRepo(hubRepo)
	err := b.poll(m)
	if err == nil || !strings.Contains(err.Error(), "repo not found") || !strings.Contains(err.Error(), "removed if the next poll says so too") {
		t.Fatalf("first not-found: %v", err)
	}
	if _, err := os.Stat(filepath.Join(b.drop, "support-bot")); err != nil {
		t.Fatal("the folder went at the first not-found")
	}
	b.hub.Commit(hubRepo, "main", files) // back
	b.pollOK(m)
	b.hub.DeleteRepo(hubRepo)
	b.poll(m)
	if _, err := os.Stat(filepath.Join(b.drop, "support-bot")); err != nil {
		t.Fatal("the folder went at a not-found that followed a good poll")
	}
	b.poll(m)
	if _, err := os.Stat(filepath.Join(b.drop, "support-bot")); !os.IsNotExist(err) {
		t.Fatalf("the folder is still there after two not-founds in a row (%v)", err)
	}
	if st := m.Status(); st.Folders != 0 {
		t.Errorf("status %+v", st)
	}
}

// An outage, a refused token, or a private repo that other credentials
// cannot see removes nothing, however many polls it lasts, and says why.
func TestHubOutageAndOtherCredentialsRemoveNothing(t *testing.T) {
	for _, tc := range []struct {
		name    string
		breakIt func(b *hubBed)
		want    string
	}{
		{"hub stopped", func(b *hubBed) { b.hub.Hub.Close() }, "nothing is removed"},
		{"token refused", func(b *hubBed) { b.env["HF_TOKEN"] = "hf_wrong" }, "nothing is removed"},
		{"private repo, token gone", func(b *hubBed) { delete(b.env, "HF_TOKEN") }, "another endpoint or token, so nothing is removed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newHubBed(t, &spec.HubSource{})
			b.hub.Commit(hubRepo, "main", plus(adapterFiles(t, 1), map[string][]byte{"adapter.yaml": []byte("model: bot:v1\n")}))
			b.hub.SetRepo(hubRepo, true, false)
			b.env["HF_TOKEN"] = b.hub.Token
			b.pollOK(b.mirror())
			tc.breakIt(b)
			m := b.mirror()
			for range 3 {
				err := b.poll(m)
				if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("poll: %v, want %q", err, tc.want)
				}
			}
			if got := b.files("support-bot"); !slices.Contains(got, layout.PEFTWeights) {
				t.Fatalf("the folder lost its files: %v", got)
			}
			if st := m.Status(); st.Folders != 1 || !strings.Contains(st.Error, tc.want) {
				t.Errorf("status %+v", st)
			}
		})
	}
}

// The daemon's Hugging Face cache is <state_dir>/hub, since the hardened
// unit hides home directories; HF_HUB_CACHE moves it. Files found there
// are copied, not fetched.
func TestHubCacheIsInStateDirUnlessHFHubCacheSaysElsewhere(t *testing.T) {
	for _, tc := range []struct {
		name     string
		hfCache  func(b *hubBed) string // HF_HUB_CACHE; "" unset
		cache    func(b *hubBed) string // where the files are cached
		wantGets int
	}{
		{"state_dir/hub by default", func(*hubBed) string { return "" }, func(b *hubBed) string { return filepath.Join(b.state, "hub") }, 0},
		{"HF_HUB_CACHE", func(b *hubBed) string { return filepath.Join(b.drop, "..", "hf") }, func(b *hubBed) string { return filepath.Join(b.drop, "..", "hf") }, 0},
		{"HF_HUB_CACHE elsewhere: state_dir/hub is not read", func(b *hubBed) string { return filepath.Join(b.drop, "..", "hf") }, func(b *hubBed) string { return filepath.Join(b.state, "hub") }, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newHubBed(t, &spec.HubSource{})
			files := plus(adapterFiles(t, 1), map[string][]byte{"adapter.yaml": []byte("model: bot:v1\n")})
			commit := b.hub.Commit(hubRepo, "main", files)
			if d := tc.hfCache(b); d != "" {
				b.env["HF_HUB_CACHE"] = d
			}
			snap := filepath.Join(tc.cache(b), "models--org--support-bot-lora", "snapshots", commit)
			if err := os.MkdirAll(snap, 0o755); err != nil {
				t.Fatal(err)
			}
			for n, data := range files {
				if err := os.WriteFile(filepath.Join(snap, n), data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			b.pollOK(b.mirror())
			if n := b.hub.Gets(hubRepo, layout.PEFTWeights); n != tc.wantGets {
				t.Errorf("the weights were fetched %d times, want %d", n, tc.wantGets)
			}
			got, err := os.ReadFile(filepath.Join(b.drop, "support-bot", layout.PEFTWeights))
			if err != nil || string(got) != string(files[layout.PEFTWeights]) {
				t.Errorf("the folder does not hold the weights (%v)", err)
			}
		})
	}
}

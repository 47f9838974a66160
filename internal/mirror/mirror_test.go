package mirror_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/adapterd/adapterd/internal/layout"
	"github.com/adapterd/adapterd/internal/metrics"
	"github.com/adapterd/adapterd/internal/mirror"
	"github.com/adapterd/adapterd/internal/mirror/s3test"
	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/testfixture"
)

const bucket = "adapters"

// shared is one SeaweedFS for the tests that do not stop it; each test
// works under its own prefix.
var shared *s3test.Server

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(func() int {
		if !testing.Short() {
			dir, err := os.MkdirTemp("", "s3source-test-")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer os.RemoveAll(dir)
			s, err := s3test.New(dir, bucket)
			if s != nil {
				defer s.Stop()
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			shared = s
		}
		return m.Run()
	}())
}

// bed is one test's source: a prefix in a bucket, a drop dir and a state
// dir, and a counter in front of the server.
type bed struct {
	t       *testing.T
	srv     *s3test.Server
	prefix  string
	drop    string
	state   string
	ready   string
	count   *s3test.CountingTransport
	base    http.RoundTripper // under the counter; nil is the default transport
	metrics *metrics.Metrics
	reg     *prometheus.Registry
	src     spec.Source
}

var nonWord = regexp.MustCompile(`[^A-Za-z0-9]+`)

func newBed(t *testing.T, srv *s3test.Server, readyFile string) *bed {
	t.Helper()
	if srv == nil {
		if testing.Short() {
			t.Skip("needs the SeaweedFS test server; run without -short")
		}
		t.Fatal("no shared SeaweedFS")
	}
	s3test.Env(t)
	root := t.TempDir()
	b := &bed{t: t, srv: srv, prefix: "fleet/" + nonWord.ReplaceAllString(t.Name(), "-") + "/",
		drop: filepath.Join(root, "drop"), state: filepath.Join(root, "state"), ready: readyFile,
		reg: prometheus.NewRegistry()}
	b.metrics = metrics.New(b.reg, nil)
	os.MkdirAll(b.drop, 0o755)
	b.src = spec.Source{Kind: spec.SourceS3, S3: &spec.S3Source{
		URL: "s3://" + bucket + "/" + b.prefix, Bucket: bucket, Prefix: b.prefix,
		Endpoint: srv.Endpoint(), PathStyle: true, Interval: time.Hour,
	}}
	return b
}

// mirror makes a new Mirror on the bed's dirs, as a restarted daemon would,
// with a fresh request counter.
func (b *bed) mirror() *mirror.Mirror {
	b.t.Helper()
	b.count = &s3test.CountingTransport{Base: b.base}
	m, err := mirror.New(mirror.Options{Source: b.src, DropDir: b.drop, StateDir: b.state,
		ReadyFile: b.ready, Metrics: b.metrics, Transport: b.count})
	if err != nil {
		b.t.Fatal(err)
	}
	return m
}

func (b *bed) poll(m *mirror.Mirror) error {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return m.Poll(ctx)
}

// pollOK polls and fails the test on any problem.
func (b *bed) pollOK(m *mirror.Mirror) {
	b.t.Helper()
	if err := b.poll(m); err != nil {
		b.t.Fatalf("poll: %v", err)
	}
}

// local is a folder of files as a training job writes them, made by code.
func (b *bed) local(write func(dir string) error) string {
	b.t.Helper()
	dir := b.t.TempDir()
	if err := write(dir); err != nil {
		b.t.Fatal(err)
	}
	return dir
}

func peftFolder(seed uint64) func(string) error {
	return func(dir string) error {
		if err := (testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: seed}).WritePEFT(dir); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, layout.SidecarYAML), []byte(fmt.Sprintf("model: peft-%d\n", seed)), 0o644)
	}
}

func ggufFolder(seed uint64) func(string) error {
	return func(dir string) error {
		return (testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: seed}).WriteGGUF(filepath.Join(dir, "lora.gguf"))
	}
}

// put uploads a local folder as <prefix><key>/.
func (b *bed) put(key, dir string) { b.srv.PutDir(b.t, b.prefix+key+"/", dir) }

// wantMirrored checks that drop/<key> holds exactly the relevant files of
// dir, byte for byte (adapterd's status file aside).
func (b *bed) wantMirrored(key, dir string) {
	b.t.Helper()
	want := map[string][]byte{}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !e.IsDir() && layout.IsRelevantFile(e.Name(), b.ready) {
			want[e.Name()], _ = os.ReadFile(filepath.Join(dir, e.Name()))
		}
	}
	got := map[string][]byte{}
	entries, err := os.ReadDir(filepath.Join(b.drop, key))
	if err != nil {
		b.t.Fatalf("%s is not mirrored: %v", key, err)
	}
	for _, e := range entries {
		if e.Name() == layout.StatusFile {
			continue
		}
		got[e.Name()], _ = os.ReadFile(filepath.Join(b.drop, key, e.Name()))
	}
	if len(got) != len(want) {
		b.t.Fatalf("%s holds %v, want %v", key, slices.Sorted(mapsKeys(got)), slices.Sorted(mapsKeys(want)))
	}
	for name, w := range want {
		if !bytes.Equal(got[name], w) {
			b.t.Fatalf("%s/%s differs from the uploaded file", key, name)
		}
	}
}

func (b *bed) wantAbsent(key string) {
	b.t.Helper()
	if _, err := os.Lstat(filepath.Join(b.drop, key)); err == nil {
		b.t.Fatalf("%s is in the drop dir, want it absent", key)
	}
}

// wantNoLeftovers checks the drop dir holds only the given entries: no
// partial, old or removed dot-folders.
func (b *bed) wantOnly(names ...string) {
	b.t.Helper()
	entries, _ := os.ReadDir(b.drop)
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	slices.Sort(names)
	if !slices.Equal(got, names) {
		b.t.Fatalf("drop dir holds %v, want %v", got, names)
	}
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func TestTwoFoldersAreMirroredOnceTheirListingIsStable(t *testing.T) {
	b := newBed(t, shared, "")
	alpha := b.local(func(dir string) error {
		if err := peftFolder(1)(dir); err != nil {
			return err
		}
		// Irrelevant files are not mirrored, as in a drop folder.
		return os.WriteFile(filepath.Join(dir, "README.md"), []byte("notes"), 0o644)
	})
	beta := b.local(ggufFolder(2))
	b.put("alpha", alpha)
	b.put("beta", beta)
	b.srv.Put(t, b.prefix+"beta/checkpoint-10/adapter_model.safetensors", []byte("a subfolder is ignored"))
	b.srv.Put(t, b.prefix+"loose-file.gguf", []byte("a file beside the folders is not a folder"))
	b.srv.Put(t, b.prefix+".hidden/adapter.yaml", []byte("model: x\n"))

	m := b.mirror()
	b.pollOK(m)
	b.wantOnly() // seen once: not known to be complete yet
	if st := m.Status(); !slices.Equal(st.Waiting, []string{"alpha", "beta"}) {
		t.Fatalf("waiting %v, want alpha and beta", st.Waiting)
	}
	b.pollOK(m)
	b.wantMirrored("alpha", alpha)
	b.wantMirrored("beta", beta)
	b.wantOnly("alpha", "beta")
	st := m.Status()
	if st.Folders != 2 || st.Error != "" || st.LastCheck.IsZero() || len(st.Waiting) != 0 {
		t.Fatalf("status %+v", st)
	}
	if got := b.count.ObjectGets(); got != 4 {
		t.Errorf("%d object downloads, want 4 (sidecar, PEFT pair, lora.gguf)", got)
	}
	if v := testutil.ToFloat64(b.metricVec("adapterd_source_up")); v != 1 {
		t.Errorf("adapterd_source_up = %v, want 1", v)
	}
}

// metricVec reads one metric of the bed's source from the registry.
func (b *bed) metricVec(name string) prometheus.Collector {
	b.t.Helper()
	mfs, err := b.reg.Gather()
	if err != nil {
		b.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mm := range mf.GetMetric() {
			for _, l := range mm.GetLabel() {
				if l.GetName() == "source" && l.GetValue() == b.src.Name() {
					v := mm.GetGauge().GetValue() + mm.GetCounter().GetValue()
					g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})
					g.Set(v)
					return g
				}
			}
		}
	}
	b.t.Fatalf("no %s for %s", name, b.src.Name())
	return nil
}

func TestFolderStillUploadingIsNotMirroredUntilItsListingStopsChanging(t *testing.T) {
	b := newBed(t, shared, "")
	full := b.local(peftFolder(3))
	m := b.mirror()
	b.srv.Put(t, b.prefix+"late/"+layout.PEFTConfig, mustRead(t, filepath.Join(full, layout.PEFTConfig)))
	b.pollOK(m)
	b.srv.Put(t, b.prefix+"late/"+layout.PEFTWeights, mustRead(t, filepath.Join(full, layout.PEFTWeights)))
	b.pollOK(m)
	b.wantOnly()
	b.srv.Put(t, b.prefix+"late/"+layout.SidecarYAML, mustRead(t, filepath.Join(full, layout.SidecarYAML)))
	b.pollOK(m)
	b.wantOnly() // changed again since the last poll
	b.pollOK(m)
	b.wantMirrored("late", full)
}

func TestReadyFileObjectDecidesWhenAFolderIsMirrored(t *testing.T) {
	b := newBed(t, shared, "READY")
	dir := b.local(ggufFolder(4))
	b.put("gated", dir)
	m := b.mirror()
	for range 3 {
		b.pollOK(m)
	}
	b.wantOnly() // stable, but no marker
	if st := m.Status(); !slices.Equal(st.Waiting, []string{"gated"}) {
		t.Fatalf("waiting %v, want gated", st.Waiting)
	}
	os.WriteFile(filepath.Join(dir, "READY"), nil, 0o644)
	b.srv.Put(t, b.prefix+"gated/READY", nil)
	b.pollOK(m) // the marker alone is enough: no second poll
	b.wantMirrored("gated", dir)
}

func TestUnchangedObjectsAreNeverDownloadedAgainAcrossARestart(t *testing.T) {
	b := newBed(t, shared, "")
	dir := b.local(peftFolder(5))
	b.put("kept", dir)
	m := b.mirror()
	b.pollOK(m)
	b.pollOK(m)
	b.wantMirrored("kept", dir)
	if got := b.count.ObjectGets(); got != 3 {
		t.Fatalf("first mirror: %d downloads, want 3", got)
	}
	// adapterd's own status file in the folder survives an update.
	status := []byte(`{"state":"ready"}`)
	os.WriteFile(filepath.Join(b.drop, "kept", layout.StatusFile), status, 0o644)

	m = b.mirror() // a restart
	b.pollOK(m)
	b.pollOK(m)
	if got := b.count.ObjectGets(); got != 0 {
		t.Fatalf("after a restart: %d downloads of unchanged objects, want 0", got)
	}

	// A new version of one file: only that one is downloaded.
	next := b.local(peftFolder(6))
	os.WriteFile(filepath.Join(next, layout.SidecarYAML), mustRead(t, filepath.Join(dir, layout.SidecarYAML)), 0o644)
	os.WriteFile(filepath.Join(next, layout.PEFTConfig), mustRead(t, filepath.Join(dir, layout.PEFTConfig)), 0o644)
	b.srv.Put(t, b.prefix+"kept/"+layout.PEFTWeights, mustRead(t, filepath.Join(next, layout.PEFTWeights)))
	m = b.mirror()
	b.pollOK(m)
	b.pollOK(m)
	b.wantMirrored("kept", next)
	if got := b.count.ObjectGets(); got != 1 {
		t.Fatalf("after one file changed: %d downloads, want 1", got)
	}
	if got := mustRead(t, filepath.Join(b.drop, "kept", layout.StatusFile)); !bytes.Equal(got, status) {
		t.Fatalf("the status file was not carried into the new version: %q", got)
	}
	b.wantOnly("kept")
}

func TestRemovedPrefixRemovesOnlyTheFolderThisSourceMade(t *testing.T) {
	b := newBed(t, shared, "")
	b.put("gone", b.local(ggufFolder(7)))
	stays := b.local(ggufFolder(8))
	b.put("stays", stays)
	// Folders someone put there by hand: one with a key the bucket does not
	// have, one with a key it does.
	os.MkdirAll(filepath.Join(b.drop, "manual"), 0o755)
	hand := filepath.Join(b.drop, "clash")
	os.MkdirAll(hand, 0o755)
	os.WriteFile(filepath.Join(hand, "lora.gguf"), []byte("by hand"), 0o644)
	b.put("clash", b.local(ggufFolder(9)))

	m := b.mirror()
	b.poll(m)
	err := b.poll(m)
	if err == nil || !strings.Contains(err.Error(), "folder clash is in drop_dir but was not made by this source") {
		t.Fatalf("poll: %v, want the clash reported", err)
	}
	if got := mustRead(t, filepath.Join(hand, "lora.gguf")); string(got) != "by hand" {
		t.Fatal("the folder made by hand was overwritten")
	}
	b.wantOnly("clash", "gone", "manual", "stays")

	b.srv.Delete(t, b.prefix+"gone/")
	b.srv.Delete(t, b.prefix+"clash/")
	b.pollOK(m)
	b.wantAbsent("gone")
	b.wantMirrored("stays", stays)
	b.wantOnly("clash", "manual", "stays") // the hand-made ones untouched
	if st := m.Status(); st.Folders != 1 {
		t.Fatalf("status %+v, want 1 folder", st)
	}
}

func TestUnreachableServerRemovesNothing(t *testing.T) {
	srv := s3test.Start(t, bucket) // its own: this test stops it
	b := newBed(t, srv, "")
	dir := b.local(ggufFolder(10))
	b.put("one", dir)
	b.put("two", b.local(ggufFolder(11)))
	m := b.mirror()
	b.pollOK(m)
	b.pollOK(m)
	before := m.Status().LastCheck

	srv.Stop()
	err := b.poll(m)
	if err == nil || !strings.Contains(err.Error(), "cannot be listed") || !strings.Contains(err.Error(), "nothing is removed") {
		t.Fatalf("poll with the server down: %v", err)
	}
	b.wantOnly("one", "two")
	st := m.Status()
	if st.Error != err.Error() || !st.LastCheck.Equal(before) || strings.Contains(st.Error, "\n") {
		t.Fatalf("status %+v: want the error, one line, and the last good listing kept", st)
	}
	if v := testutil.ToFloat64(b.metricVec("adapterd_source_up")); v != 0 {
		t.Errorf("adapterd_source_up = %v with the server down, want 0", v)
	}

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	b.pollOK(m)
	b.wantMirrored("one", dir)
	if st := m.Status(); st.Error != "" || !st.LastCheck.After(before) {
		t.Fatalf("status after the server came back: %+v", st)
	}
}

func TestEmptiedBucketRemovesNothingAndIsReported(t *testing.T) {
	b := newBed(t, shared, "")
	b.put("a", b.local(ggufFolder(12)))
	b.put("b", b.local(ggufFolder(13)))
	m := b.mirror()
	b.pollOK(m)
	b.pollOK(m)

	b.srv.Delete(t, b.prefix)
	for range 2 {
		err := b.poll(m)
		if err == nil || !strings.Contains(err.Error(), "lists no folders, but it has 2 mirrored folder(s) in drop_dir") {
			t.Fatalf("poll of the emptied prefix: %v", err)
		}
	}
	b.wantOnly("a", "b")
	if st := m.Status(); st.Error == "" || st.Folders != 2 {
		t.Fatalf("status %+v", st)
	}
	// The same across a restart: the state file remembers the folders.
	m = b.mirror()
	if err := b.poll(m); err == nil {
		t.Fatal("after a restart the empty listing was taken as the truth")
	}
	b.wantOnly("a", "b")

	// An operator who means it removes the folders by hand; the source
	// then forgets them and is healthy again, without a restart.
	os.RemoveAll(filepath.Join(b.drop, "a"))
	if err := b.poll(m); err == nil || !strings.Contains(err.Error(), "but it has 1 mirrored folder(s)") {
		t.Fatalf("poll with one folder left: %v", err)
	}
	b.wantOnly("b")
	os.RemoveAll(filepath.Join(b.drop, "b"))
	b.pollOK(m)
	if st := m.Status(); st.Folders != 0 || st.Error != "" {
		t.Fatalf("status %+v after the folders were removed by hand", st)
	}
	// And a new folder in the bucket is mirrored as usual.
	b.put("c", b.local(ggufFolder(16)))
	b.pollOK(m)
	b.pollOK(m)
	b.wantOnly("c")
}

func TestWrongCredentialsGiveOneLineAndRemoveNothing(t *testing.T) {
	b := newBed(t, shared, "")
	b.put("x", b.local(ggufFolder(14)))
	m := b.mirror()
	b.pollOK(m)
	b.pollOK(m)
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
	m = b.mirror()
	err := b.poll(m)
	if err == nil || !strings.Contains(err.Error(), "cannot be listed") || !strings.Contains(err.Error(), "credentials") {
		t.Fatalf("poll with a wrong secret: %v", err)
	}
	t.Log(err)
	b.wantOnly("x")
}

// corruptingTransport flips one byte of every object it carries, the way a
// bad NIC or proxy would: a fault-injecting proxy in front of the real
// server.
type corruptingTransport struct{}

func (corruptingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil || r.Method != http.MethodGet || r.URL.RawQuery != "" || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if len(body) > 0 {
		body[len(body)/2] ^= 0xff
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

func TestCorruptDownloadIsNeverPutInPlace(t *testing.T) {
	b := newBed(t, shared, "")
	dir := b.local(ggufFolder(15))
	b.put("bad", dir)
	b.base = corruptingTransport{}
	m := b.mirror()
	b.poll(m)
	err := b.poll(m)
	if err == nil || !strings.Contains(err.Error(), "MD5") {
		t.Fatalf("poll through a corrupting proxy: %v, want an MD5 mismatch", err)
	}
	b.wantOnly() // neither the folder nor its partial download
	if st := m.Status(); st.Folders != 0 {
		t.Fatalf("status %+v", st)
	}
	b.base = nil
	m = b.mirror()
	b.pollOK(m)
	b.pollOK(m)
	b.wantMirrored("bad", dir)
}

// A crash mid-download or mid-swap leaves dot-folders behind; a restart
// removes those of folders this source owns, and no one else's.
func TestRestartCleansOnlyItsOwnLeftovers(t *testing.T) {
	b := newBed(t, shared, "")
	b.put("mine", b.local(ggufFolder(17)))
	m := b.mirror()
	b.pollOK(m)
	b.pollOK(m)
	for _, d := range []string{".mine.s3-partial-123", ".mine.s3-old-456", ".mine.s3-removed-789", ".other.s3-partial-1", ".mine.partial"} {
		os.MkdirAll(filepath.Join(b.drop, d, "x"), 0o755)
	}
	b.mirror()
	b.wantOnly(".mine.partial", ".other.s3-partial-1", "mine")
}

// A failed mount leaves an empty directory at the drop dir's path. The
// source neither fills it with downloads nor removes anything; with the
// real directory back, it carries on.
func TestLostDropDirIsNotFilled(t *testing.T) {
	b := newBed(t, shared, "")
	b.put("m1", b.local(ggufFolder(18)))
	m := b.mirror()
	b.pollOK(m)
	b.pollOK(m)
	real := b.drop + ".real"
	if err := os.Rename(b.drop, real); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(b.drop, 0o755)
	err := b.poll(m)
	if err == nil || !strings.Contains(err.Error(), "a failed mount?") {
		t.Fatalf("poll into an empty replacement drop dir: %v", err)
	}
	b.wantOnly()
	os.Remove(b.drop)
	os.Rename(real, b.drop)
	b.pollOK(m)
	b.wantOnly("m1")
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

package mirror

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"

	"github.com/adapterd/adapterd/internal/dropdir"
	"github.com/adapterd/adapterd/internal/spec"
)

// Set runs one mirror per source in a config, of every kind, each on its
// own goroutine.
type Set struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mirrors []*Mirror
	broken  []SourceStatus // sources that could not start, with why
}

// Start starts a mirror for every source in cfg. A source that cannot
// start (a damaged state file, a bad HF_ENDPOINT) is reported in Status
// and logged; the others run.
func Start(ctx context.Context, cfg *spec.Config, o Options) *Set {
	ctx, cancel := context.WithCancel(ctx)
	s := &Set{cancel: cancel}
	for _, src := range cfg.Sources {
		mo := o
		mo.Source, mo.DropDir, mo.StateDir, mo.ReadyFile = src, cfg.DropDir, cfg.StateDir, cfg.ReadyFile
		mo.Transfers = cfg.Transfers
		m, err := New(mo)
		if err != nil {
			if o.Logger != nil {
				o.Logger.Error("source cannot start", "source", src.Name(), "err", err)
			}
			o.Metrics.SourcePolled(src.Name(), zeroTime, false, 0)
			s.broken = append(s.broken, SourceStatus{Source: src.Name(), Kind: src.Kind, Error: spec.OneLine(err.Error())})
			continue
		}
		s.mirrors = append(s.mirrors, m)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			m.Run(ctx)
		}()
	}
	return s
}

// Stop stops every mirror and waits for them. A mirror stops between two
// files at worst; its dot-folder is removed, and the folder in place stays
// as it was.
func (s *Set) Stop() {
	if s == nil {
		return
	}
	s.cancel()
	s.wg.Wait()
}

// Status returns each source's status, in config order (sources that could
// not start last).
func (s *Set) Status() []SourceStatus {
	if s == nil {
		return nil
	}
	out := make([]SourceStatus, 0, len(s.mirrors)+len(s.broken))
	for _, m := range s.mirrors {
		out = append(out, m.Status())
	}
	return append(out, s.broken...)
}

// SameSource reports whether two config entries are the same source, so
// that an edit to one (its interval; for the hub its revision, subfolder
// or sidecar) keeps its folders rather than retiring them: S3 sources by
// URL and endpoint, hub sources by their folder in drop_dir.
func SameSource(a, b spec.Source) bool {
	if a.Kind != b.Kind {
		return false
	}
	switch {
	case a.S3 != nil && b.S3 != nil:
		return a.Name() == b.Name() && a.S3.Endpoint == b.S3.Endpoint
	case a.Hub != nil && b.Hub != nil:
		return a.Hub.Key == b.Hub.Key
	}
	return false
}

// Retire undoes a source that left the config: the folders it mirrored are
// removed from the drop dir (each renamed aside in one step) and its state
// file is deleted. The daemon then treats those folders as removed, with
// remove_grace, on_remove and the guard on mass removals, as for any
// folder. Folders it did not make are never touched.
func Retire(src spec.Source, dropDir, stateDir string) ([]string, error) {
	var k kind
	switch {
	case src.S3 != nil:
		k = s3Kind
	case src.Hub != nil:
		k = hubKind
	default:
		return nil, nil
	}
	label := k.label + " " + src.Name()
	path := stateFile(src, stateDir)
	st, err := loadState(path, label, src.Name(), "")
	if err != nil {
		return nil, err
	}
	d, err := dropdir.Open(dropDir)
	if err != nil {
		return nil, fmt.Errorf("%s left the config: %w", label, err)
	}
	defer d.Close()
	var removed []string
	for _, key := range sortedKeys(st.Folders) {
		if err := d.RemoveAll(key, removeTag(k.tag)); err != nil {
			return removed, fmt.Errorf("%s left the config: cannot remove its folder %s: %w", label, key, err)
		}
		removed = append(removed, key)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return removed, err
	}
	return removed, nil
}

package s3source

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"

	"github.com/adapterd/adapterd/internal/spec"
)

// Set runs one mirror per s3 source in a config, each on its own goroutine.
type Set struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mirrors []*Mirror
	broken  []SourceStatus // sources that could not start, with why
}

// Start starts a mirror for every s3 source in cfg. A source that cannot
// start (a damaged state file) is reported in Status and logged; the others
// run.
func Start(ctx context.Context, cfg *spec.Config, o Options) *Set {
	ctx, cancel := context.WithCancel(ctx)
	s := &Set{cancel: cancel}
	for _, src := range cfg.Sources {
		if src.Kind != spec.SourceS3 {
			continue
		}
		mo := o
		mo.Source, mo.DropDir, mo.StateDir, mo.ReadyFile = src, cfg.DropDir, cfg.StateDir, cfg.ReadyFile
		m, err := New(mo)
		if err != nil {
			if o.Logger != nil {
				o.Logger.Error("source cannot start", "source", src.Name(), "err", err)
			}
			o.Metrics.SourcePolled(src.Name(), zeroTime, false, 0)
			s.broken = append(s.broken, SourceStatus{Source: src.Name(), Error: spec.OneLine(err.Error())})
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

// Retire undoes a source that left the config: the folders it mirrored are
// removed from the drop dir (each renamed aside in one step) and its state
// file is deleted. The daemon then treats those folders as removed, with
// remove_grace, on_remove and the guard on mass removals, as for any
// folder. Folders it did not make are never touched.
func Retire(src spec.Source, dropDir, stateDir string) ([]string, error) {
	if src.Kind != spec.SourceS3 || src.S3 == nil {
		return nil, nil
	}
	path := statePath(stateDir, src.Name(), src.S3.Endpoint)
	st, err := loadState(path, src.Name(), src.S3.Endpoint)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, key := range sortedKeys(st.Folders) {
		if err := removeFolder(dropDir, key); err != nil {
			return removed, fmt.Errorf("s3 source %s left the config: cannot remove its folder %s: %w", src.Name(), key, err)
		}
		removed = append(removed, key)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return removed, err
	}
	return removed, nil
}

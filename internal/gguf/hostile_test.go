package gguf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/adapterd/adapterd/internal/memtest"
)

// header builds a GGUF header whose claims need not match its bytes. skip
// leaves a hole: the file is sparse, so gigabytes of claimed data cost a
// few KB of disk.
type header struct {
	pos   int64
	parts []part
}

type part struct {
	off  int64
	data []byte
}

func (h *header) put(b []byte) {
	h.parts = append(h.parts, part{h.pos, b})
	h.pos += int64(len(b))
}

func (h *header) u32(v uint32) *header { h.put(binary.LittleEndian.AppendUint32(nil, v)); return h }
func (h *header) u64(v uint64) *header { h.put(binary.LittleEndian.AppendUint64(nil, v)); return h }
func (h *header) str(s string) *header { h.u64(uint64(len(s))); h.put([]byte(s)); return h }
func (h *header) skip(n int64) *header { h.pos += n; return h }

// contiguous returns the header's bytes when it has no hole and is small
// enough for a fuzz seed, else nil.
func (h *header) contiguous() []byte {
	var b []byte
	for _, p := range h.parts {
		if p.off != int64(len(b)) || len(b) > 64<<10 {
			return nil
		}
		b = append(b, p.data...)
	}
	return b
}

func start(tensors, kvs uint64) *header {
	h := &header{}
	return h.u32(magic).u32(3).u64(tensors).u64(kvs)
}

// writeSparse writes the header's parts into a file of size bytes.
func (h *header) writeSparse(t testing.TB, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, p := range h.parts {
		if _, err := f.WriteAt(p.data, p.off); err != nil {
			t.Fatal(err)
		}
	}
}

const (
	gib = int64(1) << 30
	mib = int64(1) << 20
)

// hostileHeaders are GGUF headers written as a hostile neighbour would:
// counts and lengths that only the file size bounded before, in sparse
// files of 8 and 16 GiB. Each must be refused fast in little memory.
var hostileHeaders = []struct {
	name  string
	size  int64
	build func() *header
}{
	{"string array claims 2^30 elements", 8 * gib, func() *header {
		return start(0, 1).str("tokenizer.ggml.tokens").u32(uint32(valArray)).u32(uint32(valString)).u64(1 << 30)
	}},
	{"string array claims 2^31 elements", 16 * gib, func() *header {
		return start(0, 1).str("tokenizer.ggml.tokens").u32(uint32(valArray)).u32(uint32(valString)).u64(2 << 30)
	}},
	{"string claims 4 GiB", 8 * gib, func() *header {
		return start(0, 1).str("general.name").u32(uint32(valString)).u64(4 << 30)
	}},
	{"string claims 12 GiB", 16 * gib, func() *header {
		return start(0, 1).str("tokenizer.chat_template").u32(uint32(valString)).u64(12 << 30)
	}},
	{"uint8 array claims 7 GiB", 8 * gib, func() *header {
		return start(0, 1).str("tokenizer.ggml.precompiled_charsmap").u32(uint32(valArray)).u32(uint32(valUint8)).u64(7 << 30)
	}},
	{"array of arrays claims 2^29 elements", 8 * gib, func() *header {
		return start(0, 1).str("x").u32(uint32(valArray)).u32(uint32(valArray)).u64(1 << 29)
	}},
	{"tensor count claims 2^30", 16 * gib, func() *header { return start(1<<30, 0) }},
	{"key count claims 2^30", 16 * gib, func() *header { return start(0, 1<<30) }},
	{"key claims 4 GiB", 8 * gib, func() *header { return start(0, 1).u64(4 << 30) }},
	{"tensor name claims 4 GiB", 8 * gib, func() *header { return start(1, 0).u64(4 << 30) }},
	{"tensor claims 2^31 dimensions", 8 * gib, func() *header { return start(1, 0).str("t").u32(1 << 31) }},
	// Just under the caps: each claim is allowed alone, and the sparse
	// zeros read as empty values, so memory fills until the budget stops
	// it. These give the worst peak.
	{"empty strings fill the budget", 8 * gib, func() *header {
		n := uint64(MaxHeaderMemory/16 - 4096)
		h := start(0, 2).str("tokenizer.ggml.tokens").u32(uint32(valArray)).u32(uint32(valString)).u64(n)
		return h.skip(int64(n) * 8).str("tokenizer.ggml.merges").u32(uint32(valArray)).u32(uint32(valString)).u64(1 << 20)
	}},
	{"4 MiB strings fill the budget", 16 * gib, func() *header {
		h := start(0, 64)
		for i := range 64 {
			h.str(fmt.Sprintf("k%d", i)).u32(uint32(valString)).u64(MaxStringLen).skip(MaxStringLen)
		}
		return h
	}},
	{"empty nested arrays fill the budget", 8 * gib, func() *header {
		n := uint64(MaxHeaderMemory/40 - 4096)
		h := start(0, 2).str("x").u32(uint32(valArray)).u32(uint32(valArray)).u64(n)
		return h.skip(int64(n) * 12).str("y").u32(uint32(valArray)).u32(uint32(valString)).u64(MaxArrayLen)
	}},
	{"uint8 arrays fill the budget", 8 * gib, func() *header {
		h := start(0, 16)
		for i := range 16 {
			h.str(fmt.Sprintf("k%d", i)).u32(uint32(valArray)).u32(uint32(valUint8)).u64(MaxArrayLen - 1).skip(MaxArrayLen - 1)
		}
		return h
	}},
	{"empty tensors up to the cap", 8 * gib, func() *header {
		h := start(MaxTensors, 0)
		for i := range MaxTensors {
			typ := TypeF32
			if i == MaxTensors-1 {
				typ = 99 // refused only after the whole table is read
			}
			h.str(fmt.Sprintf("t%d", i)).u32(1).u64(1 << 20).u32(uint32(typ)).u64(0)
		}
		return h
	}},
}

// TestHostileHeadersFailFastInLittleMemory is issue 9 item 2: an 8 GiB
// sparse GGUF claiming a huge string array took 82 s and 16.8 GB, and at
// 16 GiB the runtime died. Each header is read in a child process, which
// reports its peak resident set.
func TestHostileHeadersFailFastInLittleMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary once per header")
	}
	dir := t.TempDir()
	var worst memtest.Result
	worstName := ""
	for i, hh := range hostileHeaders {
		t.Run(hh.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("hostile-%d.gguf", i))
			hh.build().writeSparse(t, path, hh.size)
			defer os.Remove(path)
			r := memtest.Run(t, "TestHostileHeaderChild", path)
			t.Logf("peak RSS %.1f MiB in %v: %s", float64(r.PeakRSS)/float64(mib), r.Elapsed.Round(time.Millisecond), r.Err)
			switch {
			case r.Stopped:
				t.Fatalf("stopped by the watchdog: %s", r.Err)
			case r.Err == "":
				t.Fatal("the header was accepted")
			case strings.Contains(r.Err, "\n"):
				t.Errorf("multi-line error %q", r.Err)
			case !strings.HasPrefix(r.Err, path+": "):
				t.Errorf("error %q does not start with the file's path", r.Err)
			case strings.Contains(r.Err, ErrTruncated.Error()):
				t.Errorf("error %q says truncated: a cap is final, waiting for more bytes will not help", r.Err)
			}
			if limit := fastEnough(); r.Elapsed > limit {
				t.Errorf("took %v, want under %v", r.Elapsed, limit)
			}
			if !memtest.Race && r.PeakRSS >= 64*mib {
				t.Errorf("peak RSS %d MiB, want under 64 MiB", r.PeakRSS/mib)
			}
			if r.PeakRSS > worst.PeakRSS {
				worst, worstName = r, hh.name
			}
		})
	}
	t.Logf("%d hostile headers; worst peak RSS %.1f MiB (%s), race detector %v", len(hostileHeaders), float64(worst.PeakRSS)/float64(mib), worstName, memtest.Race)
}

func TestHostileHeaderChild(t *testing.T) {
	memtest.Child(t, func(path string) error {
		_, err := ReadFile(path)
		return err
	})
}

// The same headers in memory, without the child process: the errors are
// caps, not truncation, so a folder holding one is invalid, not waiting.
func TestHostileHeadersAreNotTruncation(t *testing.T) {
	for _, hh := range hostileHeaders[:11] {
		h := hh.build()
		var b []byte
		for _, p := range h.parts {
			b = append(b[:min(int64(len(b)), p.off)], make([]byte, max(0, p.off-int64(len(b))))...)
			b = append(b, p.data...)
		}
		_, err := Read(sparseReader{b}, hh.size)
		if err == nil || errors.Is(err, ErrTruncated) {
			t.Errorf("%s: err = %v, want a cap error", hh.name, err)
		}
	}
}

// sparseReader reads b followed by zeros up to any size.
type sparseReader struct{ b []byte }

func (r sparseReader) ReadAt(p []byte, off int64) (int, error) {
	clear(p)
	if off < int64(len(r.b)) {
		copy(p, r.b[off:])
	}
	return len(p), nil
}

// fastEnough is how long refusing a hostile header may take: the old reader
// took 82 s on one. The race detector slows byte-at-a-time reading tenfold.
func fastEnough() time.Duration {
	if memtest.Race {
		return time.Minute
	}
	return 5 * time.Second
}

package safetensors

import (
	"bytes"
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

const (
	gib = int64(1) << 30
	mib = int64(1) << 20
)

// hostile is a file of size bytes holding the 8-byte header length n, then
// json, then zeros (a sparse file on disk).
type hostile struct {
	name string
	size int64
	n    uint64
	json func() []byte
}

func entries(count, nameLen int) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i := range count {
		if i > 0 {
			b.WriteByte(',')
		}
		name := fmt.Sprintf("t%0*d", nameLen-1, i)
		fmt.Fprintf(&b, `%q:{"dtype":"F32","shape":[1],"data_offsets":[%d,%d]}`, name, 4*i, 4*i+4)
	}
	return b.Bytes()
}

var hostileFiles = []hostile{
	{"header claims 4 GiB", 8 * gib, 4 << 30, func() []byte { return []byte("{") }},
	{"header claims 99 MB of zeros", 8 * gib, MaxHeaderSize - 1, func() []byte { return nil }},
	{"header claims 99 MB after a brace", 16 * gib, MaxHeaderSize - 1, func() []byte { return []byte(`{"a":`) }},
	{"name claims megabytes", 8 * gib, MaxHeaderSize - 1, func() []byte { return append([]byte(`{"`), bytes.Repeat([]byte("a"), 2<<20)...) }},
	{"metadata value claims megabytes", 8 * gib, MaxHeaderSize - 1, func() []byte {
		return append([]byte(`{"__metadata__":{"format":"`), bytes.Repeat([]byte("p"), 4<<20)...)
	}},
	{"shape claims a million dimensions", 8 * gib, MaxHeaderSize - 1, func() []byte {
		return append([]byte(`{"t":{"dtype":"F32","shape":[`), bytes.Repeat([]byte("1,"), 1<<20)...)
	}},
	{"offset claims 10^30", 8 * gib, MaxHeaderSize - 1, func() []byte {
		return []byte(`{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,1000000000000000000000000000000]}}`)
	}},
	{"one tensor more than the cap", 8 * gib, MaxHeaderSize - 1, func() []byte { return entries(MaxTensors+1, 7) }},
	{"long names fill the budget", 8 * gib, MaxHeaderSize - 1, func() []byte { return entries(MaxHeaderMemory/(tensorCost+MaxNameLen)+1, MaxNameLen) }},
	{"metadata fills the budget", 8 * gib, MaxHeaderSize - 1, func() []byte {
		var b bytes.Buffer
		b.WriteString(`{"__metadata__":{`)
		for i := range MaxHeaderMemory/MaxMetadataValue + 1 {
			fmt.Fprintf(&b, `"k%d":"%s",`, i, bytes.Repeat([]byte("v"), MaxMetadataValue))
		}
		return b.Bytes()
	}},
	{"metadata entries past the cap", 8 * gib, MaxHeaderSize - 1, func() []byte {
		var b bytes.Buffer
		b.WriteString(`{"__metadata__":{`)
		for i := range MaxMetadata + 1 {
			fmt.Fprintf(&b, `"k%d":"",`, i)
		}
		return b.Bytes()
	}},
}

func (h hostile) bytes() []byte {
	return append(binary.LittleEndian.AppendUint64(nil, h.n), h.json()...)
}

func (h hostile) write(t testing.TB, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(h.size); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(h.bytes(), 0); err != nil {
		t.Fatal(err)
	}
}

// TestHostileHeadersFailFastInLittleMemory is issue 9 item 2 for
// safetensors: a header length the file size allows used to be read whole
// (up to 100 MB) and then decoded twice more. Each file is read in a child
// process, which reports its peak resident set.
func TestHostileHeadersFailFastInLittleMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary once per header")
	}
	dir := t.TempDir()
	var worst memtest.Result
	worstName := ""
	for i, h := range hostileFiles {
		t.Run(h.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("hostile-%d.safetensors", i))
			h.write(t, path)
			defer os.Remove(path)
			r := memtest.Run(t, "TestHostileHeaderChild", path)
			t.Logf("peak RSS %.1f MiB in %v: %.200s", float64(r.PeakRSS)/float64(mib), r.Elapsed.Round(time.Millisecond), r.Err)
			switch {
			case r.Stopped:
				t.Fatalf("stopped by the watchdog: %s", r.Err)
			case r.Err == "":
				t.Fatal("the header was accepted")
			case strings.Contains(r.Err, "\n"):
				t.Errorf("multi-line error %q", r.Err)
			case !strings.HasPrefix(r.Err, path+": "):
				t.Errorf("error %.200q does not start with the file's path", r.Err)
			case strings.Contains(r.Err, ErrTruncated.Error()):
				t.Errorf("error %.200q says truncated: a cap is final", r.Err)
			}
			if len(r.Err) > 1000 {
				t.Errorf("error is %d bytes long; it must stay readable", len(r.Err))
			}
			if limit := fastEnough(); r.Elapsed > limit {
				t.Errorf("took %v, want under %v", r.Elapsed, limit)
			}
			if !memtest.Race && r.PeakRSS >= 64*mib {
				t.Errorf("peak RSS %d MiB, want under 64 MiB", r.PeakRSS/mib)
			}
			if r.PeakRSS > worst.PeakRSS {
				worst, worstName = r, h.name
			}
		})
	}
	t.Logf("%d hostile headers; worst peak RSS %.1f MiB (%s), race detector %v", len(hostileFiles), float64(worst.PeakRSS)/float64(mib), worstName, memtest.Race)
}

func TestHostileHeaderChild(t *testing.T) {
	memtest.Child(t, func(path string) error {
		_, err := ReadFile(path)
		return err
	})
}

func fastEnough() time.Duration {
	if memtest.Race {
		return time.Minute
	}
	return 5 * time.Second
}

// The caps are final: a folder holding such a file is invalid, not waiting
// for the rest of a copy.
func TestHostileHeadersAreNotTruncation(t *testing.T) {
	for _, h := range hostileFiles {
		_, err := Read(sparseReader{h.bytes()}, h.size)
		if err == nil || errors.Is(err, ErrTruncated) {
			t.Errorf("%s: err = %.200v, want a cap error", h.name, err)
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

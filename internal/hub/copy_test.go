package hub

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"
)

// failAfter accepts n bytes, then fails every write.
type failAfter struct {
	n   int
	got bytes.Buffer
}

var errDiskFull = errors.New("no space left on device")

func (f *failAfter) Write(b []byte) (int, error) {
	if f.got.Len()+len(b) > f.n {
		return 0, errDiskFull
	}
	return f.got.Write(b)
}

// TestCopyHashedWritesEveryByteAndStopsAtAFailedWrite copies 5.5 chunks:
// the writer gets every byte and the hash is of those bytes; a writer that
// fails stops the copy with its error.
func TestCopyHashedWritesEveryByteAndStopsAtAFailedWrite(t *testing.T) {
	src := make([]byte, copyChunk*11/2)
	for i := range src {
		src[i] = byte(i * 7)
	}
	want := sha256.Sum256(src)
	for _, tc := range []struct {
		name    string
		fail    int
		wantErr error
		wantN   int
	}{
		{"whole", len(src), nil, len(src)},
		{"fails at the third chunk", 2 * copyChunk, errDiskFull, 2 * copyChunk},
		{"fails at the last chunk", len(src) - 1, errDiskFull, 5 * copyChunk},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &failAfter{n: tc.fail}
			h := sha256.New()
			n, err := copyHashed(w, h, bytes.NewReader(src))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if int(n) != tc.wantN {
				t.Errorf("copied %d bytes, want %d", n, tc.wantN)
			}
			if err == nil && (!bytes.Equal(w.got.Bytes(), src) || !bytes.Equal(h.Sum(nil), want[:])) {
				t.Error("the copy or the hash differs from the source")
			}
		})
	}
}

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

// TestCopyHashedWritesEveryCopyAndStopsAtTheFirstFailure copies 5.5 chunks
// to two writers: both get every byte and the hash is of those bytes; when
// either writer fails, the copy fails with its error.
func TestCopyHashedWritesEveryCopyAndStopsAtTheFirstFailure(t *testing.T) {
	src := make([]byte, copyChunk*11/2)
	for i := range src {
		src[i] = byte(i * 7)
	}
	want := sha256.Sum256(src)
	for _, tc := range []struct {
		name         string
		failA, failB int
		wantErr      error
		wantN        int
	}{
		{"both whole", len(src), len(src), nil, len(src)},
		{"the second copy fails", len(src), 2 * copyChunk, errDiskFull, -1},
		{"the first copy fails", copyChunk, len(src), errDiskFull, copyChunk},
		{"the last chunk of the second copy fails", len(src), len(src) - 1, errDiskFull, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := &failAfter{n: tc.failA}, &failAfter{n: tc.failB}
			h := sha256.New()
			n, err := copyHashed(h, bytes.NewReader(src), a, b)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if tc.wantN >= 0 && int(n) != tc.wantN {
				t.Errorf("copied %d bytes, want %d", n, tc.wantN)
			}
			if err == nil {
				if !bytes.Equal(a.got.Bytes(), src) || !bytes.Equal(b.got.Bytes(), src) {
					t.Error("a copy differs from the source")
				}
				if !bytes.Equal(h.Sum(nil), want[:]) {
					t.Error("the hash is not the source's")
				}
			}
		})
	}
}

package ingest

import (
	"bytes"
	"crypto/sha256"
	"testing"
)

func TestBackgroundHashMatchesSHA256(t *testing.T) {
	data := bytes.Repeat([]byte("adapterd"), 1<<17)
	h := newBackgroundHash()
	buf := make([]byte, 1000)
	for off := 0; off < len(data); off += len(buf) {
		n := copy(buf, data[off:])
		h.Write(buf[:n]) // the same buffer each time: Write must copy
	}
	want := sha256.Sum256(data)
	if got := h.Sum(); !bytes.Equal(got, want[:]) {
		t.Fatalf("got %x, want %x", got, want)
	}
}

package testfixture

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"strings"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/safetensors"
)

// Poison overwrites the second value of the F32 tensor name in a GGUF or
// safetensors file with v, as a diverged training run leaves NaN or Inf in
// its weights.
func Poison(path, name string, v float32) error {
	var off int64
	if strings.HasSuffix(path, ".gguf") {
		f, err := gguf.ReadFile(path)
		if err != nil {
			return err
		}
		ti, ok := f.Tensor(name)
		if !ok || ti.Type != gguf.TypeF32 {
			return fmt.Errorf("%s: no F32 tensor %s", path, name)
		}
		off = int64(f.DataOffset + ti.Offset)
	} else {
		f, err := safetensors.ReadFile(path)
		if err != nil {
			return err
		}
		ti, ok := f.Tensor(name)
		if !ok || ti.DType != "F32" {
			return fmt.Errorf("%s: no F32 tensor %s", path, name)
		}
		off = f.DataOffset + ti.Begin
	}
	fh, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], math.Float32bits(v))
	_, err = fh.WriteAt(b[:], off+4)
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	return err
}

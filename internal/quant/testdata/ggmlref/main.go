// Command ggmlref runs ggml's own C quantizers and dequantizers, as built
// into Ollama v0.24.0 (the same package and objects as the test server), on
// raw data from stdin, for the types that server's create with quantize
// cannot reach (q4_0, q4_1, q2_K, q3_K) and as a second opinion on the rest.
//
//	ggmlref quantize TYPE ROW   < float32s   > blocks   (ggml_quantize_chunk, no imatrix)
//	ggmlref dequantize TYPE N   < blocks     > float32s (dequantize_row_*)
//	ggmlref llama-quantize IN OUT FTYPE             (llama_model_quantize)
//
// TYPE is ggml's type number; ROW is the row length (n_per_row).
package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"unsafe"

	fsggml "github.com/ollama/ollama/fs/ggml"
	"github.com/ollama/ollama/ml/backend/ggml"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "ggmlref:", err)
		os.Exit(1)
	}
}

func run() error {
	if len(os.Args) == 5 && os.Args[1] == "llama-quantize" {
		ftype, err := strconv.Atoi(os.Args[4])
		if err != nil {
			return err
		}
		return llamaQuantize(os.Args[2], os.Args[3], ftype)
	}
	if len(os.Args) != 4 {
		return fmt.Errorf("usage: ggmlref quantize|dequantize TYPE N, or llama-quantize IN OUT FTYPE")
	}
	typ, err := strconv.Atoi(os.Args[2])
	if err != nil {
		return err
	}
	n, err := strconv.ParseUint(os.Args[3], 10, 64)
	if err != nil {
		return err
	}
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		return err
	}
	var out []byte
	switch os.Args[1] {
	case "quantize":
		x := make([]float32, len(in)/4)
		for i := range x {
			x[i] = math.Float32frombits(binary.LittleEndian.Uint32(in[4*i:]))
		}
		out = ggml.Quantize(fsggml.TensorType(typ), x, []uint64{n, uint64(len(x)) / n})
	case "dequantize":
		y := ggml.ConvertToF32(in, uint32(typ), n)
		out = unsafe.Slice((*byte)(unsafe.Pointer(&y[0])), 4*len(y))
	default:
		return fmt.Errorf("unknown command %q", os.Args[1])
	}
	_, err = os.Stdout.Write(out)
	return err
}

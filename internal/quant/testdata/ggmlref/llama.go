package main

// #include <stdint.h>
// #include <stdbool.h>
// #include <stdlib.h>
//
// // llama.h's llama_model_quantize_params, field for field (enums are ints),
// // declared here so the build needs no include path into the module cache.
// struct quantize_params {
//     int32_t nthread;
//     int32_t ftype;
//     int32_t output_tensor_type;
//     int32_t token_embedding_type;
//     bool allow_requantize;
//     bool quantize_output_tensor;
//     bool only_copy;
//     bool pure;
//     bool keep_split;
//     void * imatrix;
//     void * kv_overrides;
//     void * tensor_types;
//     void * prune_layers;
// };
// struct quantize_params llama_model_quantize_default_params(void);
// uint32_t llama_model_quantize(const char * fname_inp, const char * fname_out, const struct quantize_params * params);
// void llama_backend_init(void);
//
// static uint32_t quantize_file(const char * in, const char * out, int32_t ftype) {
//     llama_backend_init();
//     struct quantize_params p = llama_model_quantize_default_params();
//     p.ftype = ftype;
//     p.nthread = 1;
//     return llama_model_quantize(in, out, &p);
// }
import "C"

import (
	"fmt"
	"unsafe"

	_ "github.com/ollama/ollama/llama" // links llama.cpp, and with it llama_model_quantize
)

// llamaQuantize runs llama.cpp's own quantize (llama_model_quantize, what
// the llama-quantize tool calls) on a GGUF file: per-tensor type choice
// and ggml's quantizers, with no importance matrix.
func llamaQuantize(in, out string, ftype int) error {
	cin, cout := C.CString(in), C.CString(out)
	defer C.free(unsafe.Pointer(cin))
	defer C.free(unsafe.Pointer(cout))
	if rc := C.quantize_file(cin, cout, C.int32_t(ftype)); rc != 0 {
		return fmt.Errorf("llama_model_quantize returned %d", rc)
	}
	return nil
}

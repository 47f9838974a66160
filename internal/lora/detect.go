package lora

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/adapterd/adapterd/internal/dropdir"
	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/layout"
	"github.com/adapterd/adapterd/internal/safefile"
	"github.com/adapterd/adapterd/internal/safetensors"
	"github.com/adapterd/adapterd/internal/spec"
)

// Format is how an adapter folder stores its LoRA.
type Format string

const (
	FormatPEFT Format = "peft" // adapter_config.json + adapter_model.safetensors
	FormatGGUF Format = "gguf" // one GGUF file with general.type=adapter
)

// The top-level file names that make a folder an adapter (PRODUCT.md
// section 1). Anything else in the folder is ignored.
const (
	adapterConfigFile  = layout.PEFTConfig
	adapterModelFile   = layout.PEFTWeights
	adapterSidecarYAML = layout.SidecarYAML
	adapterSidecarYML  = layout.SidecarYML
	// adapterPickleFile is what PEFT wrote before safetensors; it only
	// sharpens the "missing" messages, since people copy it by mistake.
	adapterPickleFile = layout.PEFTPickle
)

// Adapter is a validated adapter folder's LoRA files.
type Adapter struct {
	Dir    string // absolute
	Format Format
	// Files are the absolute paths of the adapter files, sorted: PEFT:
	// adapter_config.json, adapter_model.safetensors; GGUF: the one .gguf.
	// Their base names are the keys Ollama's create expects.
	Files   []string
	Sidecar string  // absolute path of adapter.yaml or adapter.yml; "" if none
	Arch    string  // GGUF: general.architecture; PEFT: "" (PEFT files don't say)
	Rank    int     // the largest pair rank (PEFT's rank_pattern gives modules their own)
	Alpha   float64 // PEFT: lora_alpha; GGUF: adapter.lora.alpha
	Pairs   []Pair  // sorted by Layer, then Module
	// Full are modules saved whole (PEFT's modules_to_save), sorted by
	// Module: a merge puts them in place of the base's tensors, which a
	// LoRA adapter in Ollama cannot do.
	Full []FullWeight
	// ggufF32: a GGUF LoRA whose tensors are all F32, which Ollama can
	// take as it is (see NativeAsIs).
	ggufF32 bool
	// checked is what Detect saw of each file; every later read opens the
	// file through open, which refuses anything else (a FIFO or a link
	// swapped in after validation).
	checked map[string]fs.FileInfo
	// fdir is the folder holding Files, opened once by Detect without
	// following a link: every read of the adapter goes through it, so a
	// folder renamed or swapped for a link meanwhile is never read.
	fdir *os.File
}

// Close releases the adapter's folder handle. Reading the adapter after
// Close fails.
func (a *Adapter) Close() error {
	if a == nil || a.fdir == nil {
		return nil
	}
	return a.fdir.Close()
}

// openFunc opens a file to read and returns its size.
type openFunc func(path string) (*os.File, int64, error)

// Weights reads the adapter's weights and maps them onto base, from the very
// files Detect validated.
func (a *Adapter) Weights(base BaseInfo) (*Weights, error) {
	if a.Format == FormatPEFT {
		return readPEFT(a.Open, filepath.Dir(a.Files[0]), base)
	}
	return readGGUF(a.Open, a.Files[0])
}

// Open opens one of a.Files for reading, and only the file Detect checked:
// never blocking, and refusing a FIFO or link swapped in since.
func (a *Adapter) Open(path string) (*os.File, int64, error) {
	fi, ok := a.checked[path]
	if !ok {
		return nil, 0, adapterErr(path, "was not validated as part of this adapter")
	}
	return openAdapterFile(a.fdir, path, fi)
}

// openPlain opens a file given by the caller, without blocking on a FIFO.
func openPlain(path string) (*os.File, int64, error) {
	fh, err := os.OpenFile(path, os.O_RDONLY|adapterOpenFlags, 0)
	if err != nil {
		return nil, 0, err
	}
	st, err := fh.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("%s: not a regular file", path)
	}
	if err != nil {
		fh.Close()
		return nil, 0, err
	}
	return fh, st.Size(), nil
}

// Pair is one adapted linear layer (or the token embedding): a LoRA A/B
// pair.
type Pair struct {
	Layer int // -1 for embed_tokens, which is in no layer
	// Module is the PEFT module name (q_proj, k_proj, v_proj, o_proj,
	// gate_proj, up_proj, down_proj; qkv_proj and gate_up_proj for phi3).
	// GGUF names are mapped to these; names with no mapping are kept as
	// they are and refused by CheckBase.
	Module string
	// Rank is this pair's r; In and Out are the delta's input and output
	// widths: in PEFT terms A is [Rank, In] and B is [Out, Rank]. For
	// embed_tokens (lora_embedding_A/B) In is the vocabulary and Out the
	// hidden width.
	Rank, In, Out int
	// DType is the storage type of A ("F32", "F16" or "BF16"); B may
	// differ, so readers should take each tensor's own type from the file.
	DType string
	// A and B are the tensor names in the file, for code that reads the
	// weights.
	A, B string
}

// FullWeight is a module PEFT saved whole (modules_to_save): lm_head or
// embed_tokens, both [vocab, hidden] in Hugging Face order.
type FullWeight struct {
	Module     string // "lm_head" or "embed_tokens"
	Name       string // the tensor's name in adapter_model.safetensors
	Rows, Cols int    // [vocab, hidden]
	DType      string
}

// NativeBlocker says why the adapter cannot be an Ollama adapter layer, or
// "" when it can: llama.cpp adds B·A to base tensors and never replaces one.
func (a *Adapter) NativeBlocker() string {
	if len(a.Full) == 0 {
		return ""
	}
	names := make([]string, len(a.Full))
	for i, f := range a.Full {
		names[i] = f.Module
	}
	return fmt.Sprintf("the adapter replaces whole tensors (modules_to_save: %s), which an Ollama LoRA adapter cannot do; only a merge can", strings.Join(names, ", "))
}

// NativeAsIs reports whether the adapter file can be an Ollama adapter
// layer byte for byte: a GGUF LoRA in F32. llama.cpp multiplies a LoRA
// tensor with the activations converted to that tensor's vec_dot type
// (F16, BF16, or Q8_0 for a Q8_0 tensor: type_traits_cpu in ggml-cpu.c, as
// vendored by Ollama 0.24.0), so an F16, BF16 or Q8_0 LoRA
// computes its delta from rounded activations; measured on Ollama 0.24.0
// that changed 1 to 14 of 24 greedy generations of the tiny test model.
// Everything else (PEFT files, such GGUFs) is written out as an F32 GGUF
// LoRA first (Weights.WriteGGUF).
func (a *Adapter) NativeAsIs() bool { return a.Format == FormatGGUF && a.ggufF32 }

// label names the pair the way a person would look for it, without the
// PEFT wrapper prefix: "layers.1.self_attn.k_proj" or "blk.1.attn_k".
func (p Pair) label() string {
	s := p.A
	for _, suf := range []string{peftSuffixA, peftEmbedA, ggufSuffixA} {
		s = strings.TrimSuffix(s, suf)
	}
	if i := strings.Index(s, "layers."); i >= 0 && (i == 0 || s[i-1] == '.') {
		s = s[i:]
	}
	return s
}

func sortPairs(ps []Pair) {
	slices.SortFunc(ps, func(a, b Pair) int {
		if a.Layer != b.Layer {
			return a.Layer - b.Layer
		}
		return strings.Compare(a.Module, b.Module)
	})
}

// errAdapterChanged marks a file replaced between the checks and the read: a
// copy in progress, so it counts as incomplete.
var errAdapterChanged = errors.New("file changed while being read")

// errConfigEndsEarly marks an adapter_config.json whose JSON stops before it
// is complete, such as an empty file just created by a copy.
var errConfigEndsEarly = errors.New("JSON ends early")

// IsIncomplete reports whether err means the files are still being copied:
// a safetensors or GGUF file shorter than its header says, an
// adapter_config.json whose JSON stops early, or a file replaced while it
// was read. The folder should wait for more changes rather than be marked
// invalid; a file that stays this way is broken after all.
func IsIncomplete(err error) bool {
	return errors.Is(err, safetensors.ErrTruncated) || errors.Is(err, gguf.ErrTruncated) ||
		errors.Is(err, errAdapterChanged) || errors.Is(err, errConfigEndsEarly)
}

// causedError is an *spec.Error that also unwraps to the error behind it, so that
// callers get the package's one-line *spec.Error and IsIncomplete still sees a
// truncation.
type causedError struct {
	err   *spec.Error
	cause error
}

func (c *causedError) Error() string   { return c.err.Error() }
func (c *causedError) Unwrap() []error { return []error{c.err, c.cause} }

func adapterErr(file, format string, args ...any) *spec.Error {
	return &spec.Error{File: file, Msg: printable(fmt.Sprintf(format, args...))}
}

// printable keeps a message safe for terminals, JSON and log lines: text
// echoed from a damaged file can hold invalid UTF-8 or control characters,
// and *spec.Error only takes care of line breaks.
func printable(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
}

// Detect finds and validates the adapter in dir. It reads only the top-level
// files that PRODUCT.md names, never blocks on special files, and does not
// need Ollama. Every error is one line that names the file and the fix;
// IsIncomplete tells a half-copied file from a bad one.
func Detect(dir string) (*Adapter, error) {
	return DetectIn(dir, "")
}

// DetectIn is Detect for a folder whose sidecar names a subfolder (path:
// checkpoint-500): the sidecar is read from dir, the adapter files from
// dir/sub. sub must pass spec.CheckSubfolder, and every part of it must be a
// real folder, not a symlink, so that nothing outside dir is ever read; the
// files in it follow the same rules as at the top. dir itself is the
// caller's path, and links in it are followed; the daemon opens its
// folders without following any and calls DetectAt.
func DetectIn(dir, sub string) (*Adapter, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, adapterErr(dir, "cannot resolve the folder path: %s", osErrText(err))
	}
	d, err := safefile.OpenDir(abs)
	if err != nil {
		return nil, adapterErr(abs, "cannot read the adapter folder: %s", osErrText(err))
	}
	defer d.Close()
	return DetectAt(d, sub)
}

// DetectAt is DetectIn for a folder already open: every file is found and
// read through the handle (or the handle of sub below it), never by path.
// dir.Name() is the folder's path in messages. The Adapter keeps its own
// handle; Close it when done.
func DetectAt(folder *os.File, sub string) (*Adapter, error) {
	dir := folder.Name()
	sidecar, err := FindSidecarAt(folder)
	if err != nil {
		return nil, err
	}
	files := dir
	var fdir *os.File
	if sub != "" {
		if fdir, err = subfolder(folder, sub, sidecar); err != nil {
			return nil, err
		}
		files = fdir.Name()
	} else if fdir, err = safefile.Reopen(folder); err != nil {
		return nil, adapterErr(dir, "cannot read the adapter folder: %s", osErrText(err))
	}
	ok := false
	defer func() {
		if !ok {
			fdir.Close()
		}
	}()
	entries, err := dropdir.List(fdir)
	if err != nil {
		return nil, adapterErr(files, "cannot read the adapter folder: %s", osErrText(err))
	}
	var ggufs []string
	var hasConfig, hasModel, hasPickle bool
	for _, e := range entries { // sorted by name
		switch name := e.Name; {
		case name == adapterConfigFile:
			hasConfig = true
		case name == adapterModelFile:
			hasModel = true
		case name == adapterPickleFile:
			hasPickle = true
		// Hidden files are how copy tools and atomic writers stage data,
		// the same convention that hides ".foo" folders.
		case layout.IsGGUF(name):
			ggufs = append(ggufs, name)
		}
	}
	join := func(name string) string { return filepath.Join(files, name) }
	peft := hasConfig || hasModel
	pickleHint := ""
	if hasPickle {
		pickleHint = " (adapter_model.bin is PyTorch pickle, which Ollama can't read: re-save with model.save_pretrained(dir, safe_serialization=True))"
	}
	switch {
	case peft && len(ggufs) > 0:
		return nil, adapterErr(join(ggufs[0]), "found next to a PEFT adapter (adapter_config.json, adapter_model.safetensors); a folder holds one adapter: remove the GGUF file or the PEFT files")
	case len(ggufs) > 1:
		return nil, adapterErr(join(ggufs[1]), "a second GGUF file next to %s; a folder holds exactly one GGUF LoRA: move one of them out", ggufs[0])
	case hasConfig && !hasModel:
		return nil, adapterErr(join(adapterModelFile), "missing: a PEFT adapter needs adapter_model.safetensors next to adapter_config.json: copy it in%s", pickleHint)
	case hasModel && !hasConfig:
		return nil, adapterErr(join(adapterConfigFile), "missing: a PEFT adapter needs adapter_config.json next to adapter_model.safetensors: copy it in")
	case !peft && len(ggufs) == 0 && sub != "":
		return nil, adapterErr(files, "no adapter found in the folder that path: %s names: point path: at the folder holding adapter_config.json + adapter_model.safetensors, or one GGUF LoRA%s", spec.Quote(sub), pickleHint)
	case !peft && len(ggufs) == 0:
		if cp := newestCheckpoint(folder); cp != "" {
			return nil, adapterErr(dir, "no adapter at the top of the folder, only trainer checkpoints; the newest is %s: publish it with path: %s in adapter.yaml, or copy its adapter_config.json and adapter_model.safetensors to the top of the folder", cp, cp)
		}
		return nil, adapterErr(dir, "no adapter found: add adapter_config.json + adapter_model.safetensors, or one GGUF LoRA%s", pickleHint)
	}

	a := &Adapter{Dir: dir, Sidecar: sidecar, fdir: fdir}
	if peft {
		a.Format = FormatPEFT
		a.Files = []string{join(adapterConfigFile), join(adapterModelFile)}
	} else {
		a.Format = FormatGGUF
		a.Files = []string{join(ggufs[0])}
	}
	infos := make([]fs.FileInfo, len(a.Files))
	a.checked = map[string]fs.FileInfo{}
	for i, f := range a.Files {
		if infos[i], err = checkAdapterFile(fdir, f); err != nil {
			return nil, err
		}
		a.checked[f] = infos[i]
	}
	if a.Format == FormatPEFT {
		err = a.readPEFT(infos[0], infos[1])
	} else {
		err = a.readGGUF(infos[0])
	}
	if err != nil {
		return nil, err
	}
	sortPairs(a.Pairs)
	ok = true
	return a, nil
}

// FindSidecar returns the absolute path of dir's adapter.yaml or
// adapter.yml, or "" when it has none. Both at once is an error, and so is
// one adapterd must not read (a symlink, a FIFO, a hard link).
func FindSidecar(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", adapterErr(dir, "cannot resolve the folder path: %s", osErrText(err))
	}
	d, err := safefile.OpenDir(dir)
	if err != nil {
		return "", adapterErr(dir, "cannot read the adapter folder: %s", osErrText(err))
	}
	defer d.Close()
	return FindSidecarAt(d)
}

// FindSidecarAt is FindSidecar for a folder already open.
func FindSidecarAt(folder *os.File) (string, error) {
	dir := folder.Name()
	var found []string
	for _, name := range []string{adapterSidecarYAML, adapterSidecarYML} {
		if _, err := dropdir.StatAt(folder, name); err == nil {
			found = append(found, filepath.Join(dir, name))
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", adapterErr(filepath.Join(dir, name), "cannot read: %s", osErrText(err))
		}
	}
	switch len(found) {
	case 0:
		return "", nil
	case 2:
		return "", adapterErr(found[1], "both adapter.yaml and adapter.yml exist; keep only one of them")
	}
	if _, err := checkAdapterFile(folder, found[0]); err != nil {
		return "", err
	}
	return found[0], nil
}

// subfolder opens path: sub below the folder, refusing a symlink anywhere
// in it rather than following it out of the folder. Errors name the
// sidecar that set path:, and the part that is not a real folder.
func subfolder(folder *os.File, sub, sidecar string) (*os.File, error) {
	dir := folder.Name()
	file := sidecar
	if file == "" {
		file = filepath.Join(dir, adapterSidecarYAML)
	}
	if msg := spec.CheckSubfolder(sub); msg != "" {
		return nil, adapterErr(file, "path: %s", msg)
	}
	f, err := safefile.OpenDirAt(folder, sub)
	if err == nil {
		return f, nil
	}
	// Say which part is wrong.
	rel := ""
	for _, part := range strings.Split(sub, "/") {
		rel = path.Join(rel, part)
		cur := filepath.Join(dir, filepath.FromSlash(rel))
		e, err := dropdir.StatAt(folder, rel)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, adapterErr(file, "path: %s does not exist in the adapter folder (%s is missing): fix path:, or copy the checkpoint in", spec.Quote(sub), cur)
		case err != nil:
			return nil, adapterErr(file, "path: %s cannot be read (%s): make it a folder adapterd can read", spec.Quote(sub), osErrText(err))
		case e.IsSymlink():
			return nil, adapterErr(file, "path: %s goes through the symlink %s, which adapterd never follows: point path: at a real folder inside the adapter folder", spec.Quote(sub), cur)
		case !e.IsDir():
			return nil, adapterErr(file, "path: %s is not a folder (%s is %s): point path: at the folder holding the adapter files", spec.Quote(sub), cur, describeMode(fs.FileMode(0)|modeOf(e)))
		}
	}
	return nil, adapterErr(file, "path: %s cannot be read (%s): make it a folder adapterd can read", spec.Quote(sub), osErrText(err))
}

// modeOf is an Entry's type as an fs.FileMode, for describeMode.
func modeOf(e dropdir.Entry) fs.FileMode {
	switch e.Mode & 0o170000 {
	case 0o040000:
		return fs.ModeDir
	case 0o120000:
		return fs.ModeSymlink
	case 0o010000:
		return fs.ModeNamedPipe
	case 0o140000:
		return fs.ModeSocket
	case 0o020000:
		return fs.ModeDevice | fs.ModeCharDevice
	case 0o060000:
		return fs.ModeDevice
	}
	return 0
}

// checkAdapterFile refuses what adapterd must not read: a symlink (its
// target's changes are invisible to the folder's watcher, and it may lead
// to a file only adapterd can read), a hard link (the file may be someone
// else's), and anything but a regular file. It opens the file through the
// folder's handle without blocking and keeps what fstat says of it.
func checkAdapterFile(dir *os.File, path string) (fs.FileInfo, error) {
	f, err := safefile.OpenAt(dir, filepath.Base(path))
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, adapterErr(path, "cannot read: %s", osErrText(err))
		}
		return nil, adapterErr(path, "%s", strings.TrimPrefix(err.Error(), path+" "))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, adapterErr(path, "cannot read: %s", osErrText(err))
	}
	return fi, nil
}

// openAdapterFile opens a file that checkAdapterFile accepted, through the
// same folder handle. The handle must be the file that was checked: a FIFO
// or a link swapped in between is refused without blocking.
func openAdapterFile(dir *os.File, path string, want fs.FileInfo) (*os.File, int64, error) {
	if dir == nil {
		return nil, 0, adapterErr(path, "cannot open: the adapter was closed")
	}
	fh, err := safefile.OpenAt(dir, filepath.Base(path))
	var st fs.FileInfo
	if err == nil {
		st, err = fh.Stat()
		if err == nil && !os.SameFile(st, want) {
			err = errAdapterChanged
		}
		if err != nil {
			fh.Close()
		}
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, 0, adapterErr(path, "cannot open: %s", osErrText(err))
		}
		return nil, 0, &causedError{adapterErr(path, "was replaced while adapterd read it; still copying? if not, check what writes to this folder"), errAdapterChanged}
	}
	return fh, st.Size(), nil
}

func describeMode(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a file"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "a special file"
}

// osErrText drops the path from OS errors: every message already starts with
// it.
func osErrText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err.Error()
	}
	return err.Error()
}

// quoteTensor shows a tensor name in a message. Unlike quote it keeps
// real names whole, since the user has to find them; only absurd ones are cut.
func quoteTensor(name string) string {
	const max = 300
	if len(name) <= max {
		return strconv.Quote(name)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(name[cut]) {
		cut--
	}
	return strconv.Quote(name[:cut]) + "..."
}

// shortNum keeps a JSON number literal echoed in a message short; the
// literal is ASCII, so cutting bytes is safe.
func shortNum(s string) string {
	const max = 40
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// newestCheckpoint returns the checkpoint-N subfolder with the largest N
// that holds an adapter_config.json, as a Trainer's output_dir has them, or
// "". Only names are read, never the checkpoints' contents.
func newestCheckpoint(folder *os.File) string {
	entries, err := dropdir.List(folder)
	if err != nil {
		return ""
	}
	best, bestN := "", -1
	for _, e := range entries {
		n, err := strconv.Atoi(strings.TrimPrefix(e.Name, "checkpoint-"))
		if !e.IsDir() || !strings.HasPrefix(e.Name, "checkpoint-") || err != nil || n <= bestN {
			continue
		}
		if fi, err := dropdir.StatAt(folder, e.Name+"/"+adapterConfigFile); err == nil && fi.IsRegular() {
			best, bestN = e.Name, n
		}
	}
	return best
}

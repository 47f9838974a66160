package safetensors

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Fixed caps on a header, far above any real adapter and far below harm.
// The header's JSON is parsed as a stream, never held whole, so a hostile
// length (a sparse file can claim gigabytes) costs only what is read, and
// these caps and the memory budget stop a header that is merely long.
const (
	// MaxHeaderSize is the safetensors reference's own limit on the JSON
	// header (100 MB); a LoRA on every expert of a 128-expert MoE model
	// needs about 5 MB.
	MaxHeaderSize = 100_000_000
	// MaxTensors is the most tensors; that same MoE LoRA has about 37,000.
	MaxTensors = 1 << 17
	// MaxNameLen bounds a tensor name or metadata key.
	MaxNameLen = 1 << 10
	// MaxDims bounds a tensor's rank; LoRA weights have 2.
	MaxDims = 8
	// MaxMetadata bounds the __metadata__ entries; PEFT writes one.
	MaxMetadata = 1 << 10
	// MaxMetadataValue bounds one metadata value.
	MaxMetadataValue = 1 << 20
	// MaxHeaderMemory is the budget for the decoded header in memory,
	// counted as Go stores it.
	MaxHeaderMemory = 24 << 20
)

// tensorCost is the memory of one Tensor before its name and shape.
const tensorCost = 80

// parser reads a safetensors JSON header as a stream. The grammar is the
// header's, not all of JSON: an object whose members are tensor entries
// ({"dtype", "shape", "data_offsets"}) and at most one "__metadata__" object
// of strings. Strings and numbers are cut out with a length cap, then
// decoded by encoding/json, so escapes and number syntax are JSON's own.
type parser struct {
	r      *bufio.Reader
	off    int64 // bytes of the header read
	n      int64 // the header's length
	budget int64
	err    error
	tensor string // the entry being read, named in errors
}

// parseHeader parses the n-byte header r into tensors (in file order, not
// yet checked) and metadata.
func parseHeader(r io.Reader, n int64) ([]Tensor, map[string]string, error) {
	p := &parser{r: bufio.NewReaderSize(r, 64<<10), n: n, budget: MaxHeaderMemory}
	var meta map[string]string
	var chunks [][]Tensor
	count := 0
	if c := p.peek(); p.err == nil && c != '{' {
		return nil, nil, fmt.Errorf("header is not a JSON object: it starts with %q", c)
	}
	p.object(func(name string) {
		if name == "__metadata__" {
			if meta != nil {
				p.fail("__metadata__ appears twice")
				return
			}
			meta = p.metadata()
			return
		}
		if count++; count > MaxTensors {
			p.fail(fmt.Sprintf("more than %d tensors; adapterd reads at most that, and no real adapter has that many", MaxTensors))
			return
		}
		if !p.spend(tensorCost + int64(len(name))) {
			return
		}
		t := p.entry(name)
		if len(chunks) == 0 || len(chunks[len(chunks)-1]) == cap(chunks[len(chunks)-1]) {
			chunks = append(chunks, make([]Tensor, 0, 1024))
		}
		last := &chunks[len(chunks)-1]
		*last = append(*last, t)
	})
	// Writers pad the header with spaces; nothing else may follow.
	if c := p.peek(); p.err == nil && p.off < p.n {
		p.fail(fmt.Sprintf("unexpected %q after the header object", c))
	}
	if p.err != nil {
		return nil, nil, p.err
	}
	tensors := make([]Tensor, 0, count) // all count were read
	for _, c := range chunks {
		tensors = append(tensors, c...)
	}
	return tensors, meta, nil
}

func (p *parser) fail(msg string) {
	if p.err != nil {
		return
	}
	if p.tensor != "" {
		msg = fmt.Sprintf("tensor %q: %s", p.tensor, msg)
	}
	p.err = fmt.Errorf("header byte %d: %s", p.off, msg)
}

func (p *parser) spend(n int64) bool {
	if p.err != nil {
		return false
	}
	if n > p.budget {
		p.fail(fmt.Sprintf("the header needs more than %d MiB of memory; adapterd reads at most that, and no real adapter needs it", MaxHeaderMemory>>20))
		return false
	}
	p.budget -= n
	return true
}

// byte returns the next byte, or 0 after failing at the header's end.
func (p *parser) byte() byte {
	if p.err != nil {
		return 0
	}
	if p.off >= p.n {
		p.fail("the header ends in the middle of a value")
		return 0
	}
	c, err := p.r.ReadByte()
	if err != nil {
		p.err = fmt.Errorf("reading the header: %w", err)
		return 0
	}
	p.off++
	return c
}

// peek skips whitespace and returns the next byte without consuming it, or
// 0 at the end of the header.
func (p *parser) peek() byte {
	for p.err == nil && p.off < p.n {
		b, err := p.r.Peek(1)
		if err != nil {
			p.err = fmt.Errorf("reading the header: %w", err)
			return 0
		}
		switch b[0] {
		case ' ', '\t', '\n', '\r':
			p.r.ReadByte()
			p.off++
		default:
			return b[0]
		}
	}
	return 0
}

func (p *parser) expect(want byte) {
	if c := p.peek(); p.err == nil {
		if c != want {
			p.fail(fmt.Sprintf("want %q, found %q", want, c))
			return
		}
		p.byte()
	}
}

// list parses the members of a '['…']' or '{'…'}' sequence, calling item
// for each, after open was seen by the caller's expect.
func (p *parser) list(close byte, item func()) {
	if p.peek() == close {
		p.byte()
		return
	}
	for p.err == nil {
		item()
		switch c := p.peek(); {
		case p.err != nil:
		case c == ',':
			p.byte()
		case c == close:
			p.byte()
			return
		default:
			p.fail(fmt.Sprintf("want ',' or %q, found %q", close, c))
		}
	}
}

// object parses {"name": value, ...}; member must consume the value.
func (p *parser) object(member func(name string)) {
	p.expect('{')
	p.list('}', func() {
		name := p.str(MaxNameLen, "a name")
		p.expect(':')
		if p.err == nil {
			member(name)
		}
	})
}

// str reads a JSON string of at most max bytes as written (escapes
// included).
func (p *parser) str(max int, what string) string {
	p.expect('"')
	raw := []byte{'"'}
	plain := true // no escapes: the bytes are the string
	for p.err == nil {
		// Take the run of ordinary bytes already buffered in one step.
		if p.off >= p.n {
			p.fail("the header ends in the middle of a value")
			break
		}
		if _, err := p.r.Peek(1); err != nil {
			p.err = fmt.Errorf("reading the header: %w", err)
			break
		}
		run, _ := p.r.Peek(int(min(int64(p.r.Buffered()), p.n-p.off)))
		i := bytes.IndexFunc(run, func(r rune) bool { return r == '"' || r == '\\' || r < 0x20 })
		more := i < 0
		if more {
			i = len(run)
		}
		if len(raw)+i > max+1 {
			p.fail(fmt.Sprintf("%s longer than %d bytes; adapterd reads at most that", what, max))
			return ""
		}
		raw = append(raw, run[:i]...)
		p.r.Discard(i)
		p.off += int64(i)
		if more {
			continue
		}
		c := p.byte()
		switch {
		case p.err != nil:
		case c == '\\':
			raw = append(raw, c, p.byte())
			plain = false
		case c == '"':
			raw = append(raw, c)
			if plain && utf8.Valid(raw) {
				return string(raw[1 : len(raw)-1])
			}
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				p.fail(fmt.Sprintf("%s is not a valid JSON string", what))
				return ""
			}
			return s
		default:
			p.fail(fmt.Sprintf("%s holds a control character", what))
		}
	}
	return ""
}

// int reads a JSON integer.
func (p *parser) int(what string) int64 {
	p.peek()
	var buf [32]byte
	raw := buf[:0]
	for p.err == nil && p.off < p.n {
		b, err := p.r.Peek(1)
		if err != nil || !(b[0] == '-' || b[0] >= '0' && b[0] <= '9' || b[0] == '.' || b[0] == 'e' || b[0] == 'E' || b[0] == '+') {
			break
		}
		if len(raw) > 24 {
			p.fail(fmt.Sprintf("%s is not an integer", what))
			return 0
		}
		raw = append(raw, p.byte())
	}
	if p.err != nil {
		return 0
	}
	// JSON's integer syntax: -?(0|[1-9][0-9]*). Fractions and exponents
	// are not integers, as for encoding/json into an int64.
	digits := strings.TrimPrefix(string(raw), "-")
	v, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || digits == "" || digits[0] == '+' || digits[0] == '-' || (digits[0] == '0' && len(digits) > 1) {
		p.fail(fmt.Sprintf("%s is not an integer", what))
		return 0
	}
	return v
}

func (p *parser) metadata() map[string]string {
	if p.peek() == 'n' {
		p.literal("null")
		return map[string]string{}
	}
	meta := map[string]string{}
	p.object(func(k string) {
		if len(meta) >= MaxMetadata {
			p.fail(fmt.Sprintf("__metadata__ has more than %d entries; adapterd reads at most that", MaxMetadata))
			return
		}
		v := p.str(MaxMetadataValue, "a __metadata__ value")
		if p.spend(64 + int64(len(k)+len(v))) {
			meta[k] = v
		}
	})
	return meta
}

func (p *parser) literal(word string) {
	for i := range len(word) {
		if p.byte() != word[i] && p.err == nil {
			p.fail(fmt.Sprintf("want %q", word))
		}
	}
}

// entry parses one tensor's {"dtype", "shape", "data_offsets"}.
func (p *parser) entry(name string) Tensor {
	t := Tensor{Name: name}
	p.tensor = name
	defer func() { p.tensor = "" }()
	if c := p.peek(); p.err == nil && c != '{' {
		p.fail("the entry is not an object")
		return t
	}
	var seen [3]bool
	once := func(i int, field string) bool {
		if seen[i] {
			p.fail(fmt.Sprintf("%q appears twice", field))
		}
		seen[i] = true
		return p.err == nil
	}
	p.object(func(field string) {
		switch field {
		case "dtype":
			if once(0, field) {
				t.DType = p.str(16, "dtype")
			}
		case "shape":
			if !once(1, field) {
				return
			}
			p.expect('[')
			p.list(']', func() {
				if len(t.Shape) == MaxDims {
					p.fail(fmt.Sprintf("more than %d dimensions", MaxDims))
					return
				}
				if p.spend(8) {
					t.Shape = append(t.Shape, p.int("shape"))
				}
			})
		case "data_offsets":
			if !once(2, field) {
				return
			}
			p.expect('[')
			t.Begin = p.int("data_offsets")
			p.expect(',')
			t.End = p.int("data_offsets")
			p.expect(']')
		default:
			p.fail(fmt.Sprintf("unknown field %q", field))
		}
	})
	return t
}

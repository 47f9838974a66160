package hub

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
)

// peekSize is how much of a GGUF is read to find general.type. The
// metadata comes first, and general.type is among its first keys.
const peekSize = 1 << 20

// ggufKind reads the start of a GGUF file and reports its general.type
// ("adapter" for a LoRA) and whether the metadata was read to the end
// (only then does a missing general.type mean a full model). A GGUF repo
// usually holds full models in several quantizations; the header tells
// which file is an adapter before gigabytes are fetched.
func (c *Client) ggufKind(ctx context.Context, repo, commit, path string, info FileInfo) (kind string, complete bool, err error) {
	u := info.Location
	if u == "" {
		u = c.resolveURL(repo, commit, path)
	}
	req, err := c.newRequest(ctx, http.MethodGet, u)
	if err != nil {
		return "", false, err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=0-%d", peekSize-1))
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return "", false, fmt.Errorf("%s: %v", requestDesc{repo, commit, path}, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
		return "", false, c.statusError(resp, requestDesc{repo, commit, path})
	}
	head, _ := io.ReadAll(io.LimitReader(resp.Body, peekSize))
	kind, complete = ggufGeneralType(head)
	return kind, complete, nil
}

// ggufGeneralType walks GGUF metadata in b (v2 and v3 layout) for
// general.type. complete says the walk reached the last key inside b.
func ggufGeneralType(b []byte) (string, bool) {
	p := &parser{b: b, ok: true}
	if string(p.take(4)) != "GGUF" {
		return "", false
	}
	if v := p.u32(); v < 2 {
		return "", false
	}
	p.u64() // tensor count
	n := p.u64()
	for i := uint64(0); i < n && p.ok; i++ {
		key := p.str()
		typ := p.u32()
		if key == "general.type" && typ == 8 {
			s := p.str()
			return s, p.ok
		}
		p.skip(typ, 0)
	}
	return "", p.ok
}

type parser struct {
	b   []byte
	off uint64
	ok  bool
}

func (p *parser) take(n uint64) []byte {
	if !p.ok || n > uint64(len(p.b))-p.off {
		p.ok = false
		return nil
	}
	s := p.b[p.off : p.off+n]
	p.off += n
	return s
}

func (p *parser) u32() uint32 {
	if s := p.take(4); s != nil {
		return binary.LittleEndian.Uint32(s)
	}
	return 0
}

func (p *parser) u64() uint64 {
	if s := p.take(8); s != nil {
		return binary.LittleEndian.Uint64(s)
	}
	return 0
}

func (p *parser) str() string { return string(p.take(p.u64())) }

// scalar sizes by GGUF value type; 8 is string, 9 array.
var scalarSize = map[uint32]uint64{0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

func (p *parser) skip(typ uint32, depth int) {
	switch {
	case !p.ok:
	case typ == 8:
		p.take(p.u64())
	case typ == 9 && depth < 4:
		et, n := p.u32(), p.u64()
		if sz, ok := scalarSize[et]; ok {
			if n > uint64(len(p.b)) {
				p.ok = false
				return
			}
			p.take(n * sz)
			return
		}
		for i := uint64(0); i < n && p.ok; i++ {
			p.skip(et, depth+1)
		}
	default:
		sz, ok := scalarSize[typ]
		if !ok {
			p.ok = false
			return
		}
		p.take(sz)
	}
}

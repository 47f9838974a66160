package ingest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/adapterd/adapterd/internal/spec"
)

// Ollama keeps one manifest file per model under
// <models>/manifests/<host>/<namespace>/<model>/<tag>. The digest that
// /api/tags reports is the sha256 of that file's bytes, and a copy copies the
// bytes. When the store is readable from here, adapterd reads a model's
// identity straight from it instead of listing every model: a list costs
// Ollama a scan of all manifests, which grows with the store.

// manifest is what adapterd needs of one manifest file.
type manifest struct {
	Digest   string // hex sha256 of the file, as /api/tags reports it
	Modified time.Time
	Layers   []manifestLayer `json:"layers"`
}

type manifestLayer struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
}

func (m *manifest) has(digest string) bool {
	for _, l := range m.Layers {
		if l.Digest == digest {
			return true
		}
	}
	return false
}

// maxManifest bounds what is read of a manifest: real ones are a few KB.
const maxManifest = 1 << 20

// readManifest reads the manifest of the model name (canonical) in the store
// dir. A model that does not exist is (nil, nil); an error means the store
// could not answer, and the caller asks Ollama instead.
func readManifest(dir, name string) (*manifest, error) {
	host, ns, model, tag := spec.ModelPath(name)
	p, err := findFold(filepath.Join(dir, "manifests"), host, ns, model, tag)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", p)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxManifest+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxManifest {
		return nil, fmt.Errorf("%s: larger than any manifest", p)
	}
	m := &manifest{Modified: fi.ModTime()}
	if err := json.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	sum := sha256.Sum256(b)
	m.Digest = hex.EncodeToString(sum[:])
	return m, nil
}

// findFold walks parts below root, matching each name without regard to
// case, as Ollama matches model names.
func findFold(root string, parts ...string) (string, error) {
	p := root
	for _, part := range parts {
		if part == "" || part == "." || part == ".." || strings.ContainsRune(part, filepath.Separator) {
			return "", fs.ErrNotExist
		}
		if _, err := os.Lstat(filepath.Join(p, part)); err == nil {
			p = filepath.Join(p, part)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return "", err
		}
		found := ""
		for _, e := range entries {
			if strings.EqualFold(e.Name(), part) {
				found = e.Name()
				break
			}
		}
		if found == "" {
			return "", fs.ErrNotExist
		}
		p = filepath.Join(p, found)
	}
	return p, nil
}

package spec

import (
	"fmt"
	"net/url"
	"path"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/adapterd/adapterd/internal/hub"
	"github.com/adapterd/adapterd/internal/layout"
)

// DefaultS3Interval is how often an s3 source lists its bucket.
const DefaultS3Interval = time.Minute

// DefaultHubInterval is how often a hub source resolves its revision. Each
// check is one small request (the revision's commit); files are fetched
// only when the commit changes. NVIDIA NIM's NIM_PEFT_REFRESH_INTERVAL
// polls its LoRA store every 10 s, but against a local directory; against
// the public Hub, whose rate limits count per token, five minutes is the
// polite default, and a pin to a commit never changes anyway.
const DefaultHubInterval = 5 * time.Minute

// Source kinds: the key that names an entry's kind in sources:.
const (
	SourceS3  = "s3"
	SourceHub = "hub"
)

// Source is one entry of the config's sources: list. Exactly one kind is
// set; the kind's own settings live in its own struct.
type Source struct {
	Kind string     // SourceS3 or SourceHub
	Line int        // the entry's line in the config, for messages
	S3   *S3Source  // set when Kind is SourceS3
	Hub  *HubSource // set when Kind is SourceHub
}

// Name identifies the source in status, metrics and logs: for S3 the URL
// as written in the config, normalised; for the hub hf://org/name@revision
// with /subfolder after it when there is one (huggingface_hub's HfFileSystem
// spelling).
func (s Source) Name() string {
	switch {
	case s.S3 != nil:
		return s.S3.URL
	case s.Hub != nil:
		n := "hf://" + s.Hub.Repo + "@" + s.Hub.Revision
		if s.Hub.Subfolder != "" {
			n += "/" + s.Hub.Subfolder
		}
		return n
	}
	return s.Kind
}

// Interval is how often the source is polled.
func (s Source) Interval() time.Duration {
	switch {
	case s.S3 != nil:
		return s.S3.Interval
	case s.Hub != nil:
		return s.Hub.Interval
	}
	return time.Minute
}

// HubSource mirrors one adapter from a Hugging Face Hub repo (or any server
// HF_ENDPOINT names) into <drop_dir>/<Key>/.
type HubSource struct {
	Repo      string // org/name
	Revision  string // branch, tag or commit; "main" when not given
	Subfolder string // the folder in the repo that holds the adapter, cleaned; "" for the top
	Key       string // the folder's name in drop_dir
	// Sidecar becomes the folder's adapter.yaml when the repo has none;
	// nil when not given.
	Sidecar  *Sidecar
	Interval time.Duration
}

// S3Source mirrors every sub-prefix <key>/ of an S3 prefix into
// <drop_dir>/<key>/.
type S3Source struct {
	URL       string // normalised: s3://bucket/prefix/ (prefix may be empty: s3://bucket/)
	Bucket    string
	Prefix    string // "" or ends with "/"
	Endpoint  string // "" means AWS; otherwise scheme://host[:port] with no path
	Region    string // "" means: ask the endpoint
	PathStyle bool
	Interval  time.Duration
}

var (
	sourceKinds = []string{SourceS3, SourceHub}
	s3Keys      = []string{SourceS3, "endpoint", "region", "path_style", "interval"}
	hubKeys     = []string{SourceHub, "revision", "subfolder", "key", "sidecar", "interval"}
)

// sources reads the sources: list.
func (d *yamlDecoder) sources(v *yaml.Node) ([]Source, error) {
	v = deref(v)
	if v.Kind != yaml.SequenceNode {
		return nil, d.errf(v, "sources must be a list, found %s; write each source as a list item, such as %s", describe(v), `"- s3: s3://bucket/prefix/"`)
	}
	var out []Source
	seen := map[string]int{}
	keys := map[string]int{} // hub keys: each is one folder in drop_dir
	for _, item := range v.Content {
		item = deref(item)
		if item.Kind != yaml.MappingNode {
			return nil, d.errf(item, "each sources entry must be a mapping, found %s; write for example %s", describe(item), `"- s3: s3://bucket/prefix/"`)
		}
		var kinds []string
		for i := 0; i+1 < len(item.Content); i += 2 {
			if k := deref(item.Content[i]); k.Kind == yaml.ScalarNode {
				for _, kind := range sourceKinds {
					if k.Value == kind {
						kinds = append(kinds, kind)
					}
				}
			}
		}
		switch {
		case len(kinds) == 0:
			return nil, d.errf(item, "this sources entry names no kind; start it with %s", `"s3: s3://bucket/prefix/"`)
		case len(kinds) > 1:
			return nil, d.errf(item, "this sources entry has both %s and %s; write one list item per source", kinds[0], kinds[1])
		}
		var s Source
		var err error
		if kinds[0] == SourceHub {
			s, err = d.hubSource(item)
		} else {
			s, err = d.s3Source(item)
		}
		if err != nil {
			return nil, err
		}
		if s.Hub != nil {
			if first, dup := keys[s.Hub.Key]; dup {
				return nil, d.errf(item, "hub source %s would mirror into folder %s, as the source on line %d does; set key: on one of them to another folder name", s.Name(), s.Hub.Key, first)
			}
			keys[s.Hub.Key] = item.Line
		}
		if first, dup := seen[s.Name()]; dup {
			return nil, d.errf(item, "source %s is listed twice (first on line %d); remove one of them", s.Name(), first)
		}
		seen[s.Name()] = item.Line
		out = append(out, s)
	}
	return out, nil
}

func (d *yamlDecoder) s3Source(item *yaml.Node) (Source, error) {
	s3 := &S3Source{Interval: DefaultS3Interval}
	var urlNode *yaml.Node
	err := d.mapping(item, "an s3 source", s3Keys, func(key string, k, v *yaml.Node) error {
		var err error
		switch key {
		case SourceS3:
			urlNode = v
			var s string
			if s, err = d.str("s3", v); err != nil {
				return err
			}
			s3.Bucket, s3.Prefix, err = ParseS3URL(s)
			if err != nil {
				return d.errf(v, "s3: %v", err)
			}
			s3.URL = "s3://" + s3.Bucket + "/" + s3.Prefix
		case "endpoint":
			var s string
			if s, err = d.str("endpoint", v); err != nil || strings.TrimSpace(s) == "" {
				return err
			}
			if s3.Endpoint, err = parseEndpoint(s); err != nil {
				return d.errf(v, "endpoint: %v", err)
			}
		case "region":
			s3.Region, err = d.str("region", v)
			s3.Region = strings.TrimSpace(s3.Region)
		case "path_style":
			s3.PathStyle, err = d.boolean("path_style", v)
		case "interval":
			s3.Interval, err = d.duration("interval", v, true)
		}
		return err
	})
	if err != nil {
		return Source{}, err
	}
	if urlNode == nil {
		return Source{}, d.errf(item, "s3 has no value; write s3: s3://bucket/prefix/")
	}
	return Source{Kind: SourceS3, Line: item.Line, S3: s3}, nil
}

func (d *yamlDecoder) hubSource(item *yaml.Node) (Source, error) {
	h := &HubSource{Revision: "main", Interval: DefaultHubInterval}
	var repoNode, keyNode *yaml.Node
	err := d.mapping(item, "a hub source", hubKeys, func(key string, k, v *yaml.Node) error {
		var err error
		switch key {
		case SourceHub:
			repoNode = v
			if h.Repo, err = d.str("hub", v); err != nil {
				return err
			}
			h.Repo = strings.TrimSpace(h.Repo)
			if err := (hub.Request{Repo: h.Repo}).Check(); err != nil {
				return d.errf(v, "hub: %v", err)
			}
		case "revision":
			var s string
			if s, err = d.str("revision", v); err != nil {
				return err
			}
			if s = strings.TrimSpace(s); s != "" {
				if strings.ContainsAny(s, " \x00") || strings.Contains(s, "..") {
					return d.errf(v, "revision: %s is not a branch, tag or commit; write for example main, v1.2 or a 40-digit commit", Quote(s))
				}
				h.Revision = s
			}
		case "subfolder":
			var s string
			if s, err = d.str("subfolder", v); err != nil {
				return err
			}
			if s = strings.TrimSpace(s); s != "" {
				clean := path.Clean(s)
				if path.IsAbs(s) || clean == ".." || strings.HasPrefix(clean, "../") || strings.ContainsRune(s, 0) {
					return d.errf(v, "subfolder: %s leaves the repo; give a folder inside it, like checkpoint-500, or \"\" for the top", Quote(s))
				}
				if clean != "." {
					h.Subfolder = clean
				}
			}
		case "key":
			keyNode = v
			if h.Key, err = d.str("key", v); err != nil {
				return err
			}
			if !layout.IsAdapterKey(h.Key) || h.Key == ".." {
				return d.errf(v, "key: %s is not a drop_dir folder name: no '/', and no leading '.' or '_'; write for example support-bot", Quote(h.Key))
			}
		case "sidecar":
			sc := &Sidecar{}
			if err := d.settings(v, "sidecar.", sidecarKeys, sc); err != nil {
				return err
			}
			h.Sidecar = sc
		case "interval":
			h.Interval, err = d.duration("interval", v, true)
		}
		return err
	})
	if err != nil {
		return Source{}, err
	}
	if repoNode == nil {
		return Source{}, d.errf(item, "hub has no value; write hub: org/name")
	}
	if keyNode == nil {
		k, ok := layout.KeyFromRepo(h.Repo)
		if !ok {
			return Source{}, d.errf(repoNode, "cannot make a drop_dir folder name from repo %s; add key: with one", Quote(h.Repo))
		}
		h.Key = k
	}
	return Source{Kind: SourceHub, Line: item.Line, Hub: h}, nil
}

// ParseS3URL splits s3://bucket/prefix into bucket and a prefix that is
// empty or ends with "/": every folder under it is one adapter, so the
// prefix always names a "directory".
func ParseS3URL(s string) (bucket, prefix string, err error) {
	s = strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(s, "s3://")
	if !ok {
		return "", "", fmt.Errorf("%s is not an s3:// URL; write s3://bucket/prefix/", Quote(s))
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	if bucket == "" || strings.ContainsAny(bucket, " ?#\\") {
		return "", "", fmt.Errorf("%s has no usable bucket name; write s3://bucket/prefix/", Quote(s))
	}
	if strings.Contains(prefix, "//") || strings.HasPrefix(prefix, "/") {
		return "", "", fmt.Errorf("%s has an empty folder name (//); remove the extra slash", Quote(s))
	}
	if strings.ContainsRune(prefix, 0) {
		return "", "", fmt.Errorf("the prefix contains a NUL byte; remove it")
	}
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return bucket, prefix, nil
}

// parseEndpoint accepts http(s)://host[:port] and returns it without a
// trailing slash.
func parseEndpoint(s string) (string, error) {
	s = strings.TrimSpace(s)
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%s is not an http:// or https:// URL; write for example http://127.0.0.1:8333, or \"\" for AWS", Quote(s))
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("%s has a path, query or user; write only scheme://host:port, such as http://127.0.0.1:8333", Quote(s))
	}
	return u.Scheme + "://" + u.Host, nil
}

package spec

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// DefaultS3Interval is how often an s3 source lists its bucket.
const DefaultS3Interval = time.Minute

// Source kinds: the key that names an entry's kind in sources:.
const (
	SourceS3  = "s3"
	SourceHub = "hub" // planned; refused with "not yet available"
)

// Source is one entry of the config's sources: list. Exactly one kind is
// set; the kind's own settings live in its own struct so that another kind
// (hub:) can be added beside S3 without touching the others.
type Source struct {
	Kind string    // SourceS3
	Line int       // the entry's line in the config, for messages
	S3   *S3Source // set when Kind is SourceS3
}

// Name identifies the source in status, metrics and logs: the URL as
// written in the config, normalised.
func (s Source) Name() string {
	if s.S3 != nil {
		return s.S3.URL
	}
	return s.Kind
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
)

// sources reads the sources: list.
func (d *yamlDecoder) sources(v *yaml.Node) ([]Source, error) {
	v = deref(v)
	if v.Kind != yaml.SequenceNode {
		return nil, d.errf(v, "sources must be a list, found %s; write each source as a list item, such as %s", describe(v), `"- s3: s3://bucket/prefix/"`)
	}
	var out []Source
	seen := map[string]int{}
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
		case kinds[0] == SourceHub:
			return nil, d.errf(item, "sources: hub entries are not yet available in this adapterd; remove the entry, or download the repo into drop_dir yourself")
		}
		s, err := d.s3Source(item)
		if err != nil {
			return nil, err
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

package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/adapterd/adapterd/internal/ingest"
	"github.com/adapterd/adapterd/internal/mirror"
	"github.com/adapterd/adapterd/internal/spec"
)

// cmdPublish uploads an adapter folder to the bucket a fleet mirrors, after
// the checks of `adapterd check` that need no Ollama (the files, the
// weights, the template, the native rules), so that no host ever sees it
// half-written or refuses it for what could be seen here: the files first,
// the ready marker last.
// DIR and the URL come first, as in cp; flags may follow them
// (parsePositionalFirst).
func cmdPublish(ctx context.Context, fl *publishFlags, pos []string, env Env) error {
	if len(pos) != 2 {
		return usageError{"publish needs DIR and s3://bucket/prefix/KEY"}
	}
	dir, url := pos[0], strings.TrimSuffix(pos[1], "/")
	bucket, prefix, err := spec.ParseS3URL(url)
	if err != nil {
		return usageError{err.Error()}
	}
	prefix = strings.TrimSuffix(prefix, "/")
	key := prefix[strings.LastIndex(prefix, "/")+1:]
	if key == "" {
		return usageError{"publish needs the folder's key at the end of the URL: s3://bucket/prefix/KEY"}
	}
	parent := strings.TrimSuffix(prefix, key)

	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(fl.config, filepath.Dir(abs))
	if err != nil {
		return err
	}
	f, err := ingest.LoadFolder(abs, cfg.Defaults)
	if err != nil {
		return codedError{ingest.ExitInvalid, err}
	}
	// The daemon's decision without an Ollama (the fleet's may differ from
	// any here): what it refuses offline never reaches the bucket.
	res, err := ingest.Evaluate(ctx, nil, f, ingest.OnceOptions{Offline: true})
	if err != nil {
		return err
	}
	if d := res.Decision; len(d.Refusals) > 0 {
		return codedError{ingest.ExitInvalid, d.Refusals[0]}
	}
	dest := &spec.S3Source{Bucket: bucket, Prefix: parent, Endpoint: fl.endpoint, Region: fl.region, PathStyle: fl.pathStyle}
	for _, src := range cfg.Sources {
		if src.S3 != nil && src.S3.Bucket == bucket && fl.endpoint == "" {
			dest.Endpoint, dest.PathStyle = src.S3.Endpoint, src.S3.PathStyle || fl.pathStyle
			if dest.Region == "" {
				dest.Region = src.S3.Region
			}
		}
	}
	marker := fl.readyFile
	if marker == "" {
		marker = cfg.ReadyFile
	}
	if marker == "" {
		marker = "READY"
	}
	files := append([]string(nil), f.Adapter.Files...)
	if f.Adapter.Sidecar != "" {
		files = append(files, f.Adapter.Sidecar)
	}
	var names []string
	for _, p := range files {
		rel, err := filepath.Rel(abs, p)
		if err != nil {
			return err
		}
		names = append(names, filepath.ToSlash(rel))
	}
	n, err := mirror.Publish(ctx, dest, key, abs, names, marker, nil)
	if err != nil {
		return codedError{ingest.ExitOllama, err}
	}
	fmt.Fprintf(env.Stdout, "published %s to s3://%s/%s%s/ (%d files, %d bytes, then %s)\n", abs, bucket, parent, key, len(files), n, marker)
	return nil
}

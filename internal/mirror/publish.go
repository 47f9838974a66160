package mirror

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/minio/minio-go/v7"

	"github.com/adapterd/adapterd/internal/spec"
)

// Publish uploads one adapter folder's files to <prefix><key>/ in dest's
// bucket so that no mirror ever takes it half-written: the ready marker is
// removed first, then every file is uploaded (with its MD5, which S3
// checks), objects of an older version that are not in this one are
// removed, and the ready marker is written last. Mirrors without a
// ready_file see the listing change and wait until it is stable.
//
// files are absolute paths; their base names become the object names. It
// returns the bytes uploaded.
func Publish(ctx context.Context, dest *spec.S3Source, key string, files []string, readyFile string, transport http.RoundTripper) (int64, error) {
	client, err := newClient(dest, transport, spec.DefaultIdleTimeout)
	if err != nil {
		return 0, err
	}
	base := dest.Prefix + key + "/"
	where := "s3://" + dest.Bucket + "/" + base
	if readyFile != "" {
		err := client.RemoveObject(ctx, dest.Bucket, base+readyFile, minio.RemoveObjectOptions{})
		if err != nil && minio.ToErrorResponse(err).Code != "NoSuchKey" {
			return 0, fmt.Errorf("%s: cannot remove the old %s marker first: %v", where, readyFile, err)
		}
	}
	keep := map[string]bool{}
	var sent int64
	for _, path := range files {
		name := filepath.Base(path)
		keep[base+name] = true
		f, err := os.Open(path)
		if err != nil {
			return sent, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return sent, err
		}
		_, err = client.PutObject(ctx, dest.Bucket, base+name, f, fi.Size(), minio.PutObjectOptions{SendContentMd5: true})
		f.Close()
		if err != nil {
			return sent, fmt.Errorf("%s%s: upload failed: %v; check the credentials and the bucket", where, name, err)
		}
		sent += fi.Size()
	}
	for obj := range client.ListObjects(ctx, dest.Bucket, minio.ListObjectsOptions{Prefix: base, Recursive: true}) {
		if obj.Err != nil {
			return sent, fmt.Errorf("%s: cannot list the old version: %v", where, obj.Err)
		}
		if keep[obj.Key] || strings.HasSuffix(obj.Key, "/"+readyFile) && readyFile != "" {
			continue
		}
		if err := client.RemoveObject(ctx, dest.Bucket, obj.Key, minio.RemoveObjectOptions{}); err != nil {
			return sent, fmt.Errorf("%s: cannot remove %s of the old version: %v", where, obj.Key, err)
		}
	}
	if readyFile != "" {
		if _, err := client.PutObject(ctx, dest.Bucket, base+readyFile, bytes.NewReader(nil), 0, minio.PutObjectOptions{}); err != nil {
			return sent, fmt.Errorf("%s%s: cannot write the ready marker: %v", where, readyFile, err)
		}
	}
	return sent, nil
}

package mirror

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"strings"

	"github.com/minio/minio-go/v7"

	"github.com/adapterd/adapterd/internal/safefile"
	"github.com/adapterd/adapterd/internal/spec"
)

// Publish uploads one adapter folder's files to <prefix><key>/ in dest's
// bucket so that no mirror ever takes it half-written: the ready marker is
// removed first, then every file is uploaded (with its MD5, which S3
// checks), objects of an older version that are not in this one are
// removed, and the ready marker is written last. Mirrors without a
// ready_file see the listing change and wait until it is stable.
//
// names are files in dir, as slash-separated paths relative to it (a
// sidecar's path: may put the adapter in a subfolder); their base names
// become the object names. Every file is opened first, relative to dir
// and without following links, and
// kept only if it is a regular file with one link (safefile.OpenAt): the
// bytes uploaded are read through those handles, never by path again, so a
// link or FIFO swapped in after the folder was checked is refused before
// anything in the bucket changes. It returns the bytes uploaded.
func Publish(ctx context.Context, dest *spec.S3Source, key, dir string, names []string, readyFile string, transport http.RoundTripper) (int64, error) {
	d, err := safefile.OpenDir(dir)
	if err != nil {
		return 0, err
	}
	defer d.Close()
	type file struct {
		name string
		f    *os.File
		size int64
	}
	var files []file
	defer func() {
		for _, f := range files {
			f.f.Close()
		}
	}()
	for _, name := range names {
		f, err := openUnder(d, name)
		if err != nil {
			return 0, fmt.Errorf("%v; nothing was uploaded", err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return 0, err
		}
		files = append(files, file{path.Base(name), f, fi.Size()})
	}
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
	for _, f := range files {
		keep[base+f.name] = true
		// A SectionReader: minio-go may read a part twice (MD5, then the
		// upload), and it must be the same handle's bytes both times.
		_, err = client.PutObject(ctx, dest.Bucket, base+f.name, io.NewSectionReader(f.f, 0, f.size), f.size, minio.PutObjectOptions{SendContentMd5: true})
		if err != nil {
			return sent, fmt.Errorf("%s%s: upload failed: %v; check the credentials and the bucket", where, f.name, err)
		}
		sent += f.size
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

// openUnder opens the regular file at rel below dir, one component at a
// time, never through a link.
func openUnder(dir *os.File, rel string) (*os.File, error) {
	parts := strings.Split(rel, "/")
	cur := dir
	for _, p := range parts[:len(parts)-1] {
		next, err := safefile.OpenDirAt(cur, p)
		if cur != dir {
			cur.Close()
		}
		if err != nil {
			return nil, err
		}
		cur = next
	}
	f, err := safefile.OpenAt(cur, parts[len(parts)-1])
	if cur != dir {
		cur.Close()
	}
	return f, err
}

package mirror

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/adapterd/adapterd/internal/layout"
	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/transfer"
)

// s3Kind: each immediate sub-prefix is one folder; a listing is weak
// evidence, so an empty one holds removals, and one that misses a folder
// removes it at once (a prefix is deleted on purpose; the hold covers the
// outage that empties everything).
var s3Kind = kind{label: "s3 source", tag: "s3", policy: policy{holdEmpty: true, goneAfter: 1}}

// Credentials is the chain every S3 source uses, in order: the AWS
// environment variables; the shared config and credentials files
// (AWS_PROFILE, AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE, SSO profiles
// and credential_process included); then web identity
// (AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN), the ECS container
// endpoint and the EC2 instance profile. With none of them, requests are
// anonymous.
func Credentials() *credentials.Credentials {
	return credentials.NewChainCredentials([]credentials.Provider{
		&credentials.EnvAWS{},
		&credentials.FileAWSCredentials{},
		&credentials.IAM{},
	})
}

// newClient is the S3 client for a source's endpoint, addressing and the
// standard credentials. Every request through it is cut after idle
// without a byte (transfer.Transport).
func newClient(s3 *spec.S3Source, transport http.RoundTripper, idle time.Duration) (*minio.Client, error) {
	if transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.DisableCompression = true // minio-go checks the bytes as sent
		transport = t
	}
	transport = transfer.Transport(transport, idle, "transfers.idle_timeout")
	host, secure := "s3.amazonaws.com", true
	lookup := minio.BucketLookupAuto
	if s3.Endpoint != "" {
		u, err := url.Parse(s3.Endpoint)
		if err != nil {
			return nil, fmt.Errorf("endpoint %s: %v", s3.Endpoint, err)
		}
		host, secure = u.Host, u.Scheme == "https"
		lookup = minio.BucketLookupDNS
	}
	if s3.PathStyle {
		lookup = minio.BucketLookupPath
	}
	return minio.New(host, &minio.Options{
		Creds:        Credentials(),
		Secure:       secure,
		Region:       s3.Region,
		BucketLookup: lookup,
		Transport:    transport,
	})
}

// s3Remote lists an S3 prefix and fetches its folders object by object.
type s3Remote struct {
	s3        *spec.S3Source
	label     string
	readyFile string
	client    *minio.Client
	maxSize   int64
}

// maxListEntries bounds the objects one poll lists, over all pages: an
// endpoint that pages forever is cut off instead of growing memory. Only
// folder names and relevant files are kept while listing.
const maxListEntries = 100_000

func newS3(o Options) (*s3Remote, error) {
	client, err := newClient(o.Source.S3, o.Transport, o.Transfers.IdleTimeout)
	if err != nil {
		return nil, fmt.Errorf("%v; fix endpoint in the config", err)
	}
	return &s3Remote{s3: o.Source.S3, label: s3Kind.label + " " + o.Source.Name(), readyFile: o.ReadyFile, client: client, maxSize: int64(o.Transfers.MaxFileSize)}, nil
}

func (r *s3Remote) access() string { return "" }

// check lists the prefix: each folder's relevant top-level objects.
func (r *s3Remote) check(ctx context.Context) (map[string]offer, error) {
	listing, err := r.list(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s cannot be listed: %s; nothing is removed; check the endpoint, the bucket name and the credentials", r.label, oneLine(err))
	}
	out := make(map[string]offer, len(listing))
	for key, files := range listing {
		f := offer{Version: filesVersion(files), Files: files}
		if r.readyFile != "" {
			f.Ready = notReady
			if _, ok := files[r.readyFile]; ok {
				f.Ready = readyNow
			}
		}
		out[key] = f
	}
	return out, nil
}

// list returns each folder's relevant top-level objects. A key is in the
// result when it has any object under it, relevant or not.
func (r *s3Remote) list(ctx context.Context) (map[string]map[string]object, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := map[string]map[string]object{}
	seen := 0
	tooMany := func() error {
		seen++
		if seen > maxListEntries {
			return fmt.Errorf("the listing has more than %d objects, more than adapter folders hold; check the prefix", maxListEntries)
		}
		return nil
	}
	for o := range r.client.ListObjects(ctx, r.s3.Bucket, minio.ListObjectsOptions{Prefix: r.s3.Prefix}) {
		if o.Err != nil {
			return nil, o.Err
		}
		if err := tooMany(); err != nil {
			return nil, err
		}
		key, ok := strings.CutPrefix(o.Key, r.s3.Prefix)
		if !ok || !strings.HasSuffix(key, "/") {
			continue // a file directly under the prefix is not a folder
		}
		key = strings.TrimSuffix(key, "/")
		if layout.IsAdapterKey(key) {
			out[key] = nil
		}
	}
	for key := range out {
		files := map[string]object{}
		any := false
		p := r.s3.Prefix + key + "/"
		for o := range r.client.ListObjects(ctx, r.s3.Bucket, minio.ListObjectsOptions{Prefix: p}) {
			if o.Err != nil {
				return nil, o.Err
			}
			if err := tooMany(); err != nil {
				return nil, err
			}
			name := strings.TrimPrefix(o.Key, p)
			if name == "" || strings.Contains(name, "/") {
				any = any || name != ""
				continue // the folder marker, or a subfolder: ignored as in a drop folder
			}
			any = true
			if layout.IsRelevantFile(name, r.readyFile) {
				files[name] = object{Size: o.Size, ETag: o.ETag}
			}
		}
		if !any {
			delete(out, key) // gone between the two listings
			continue
		}
		out[key] = files
	}
	return out, nil
}

// fetch downloads the listed objects, copying unchanged ones.
func (r *s3Remote) fetch(ctx context.Context, key string, f offer, dir *os.File, reuse func(string, object) bool) (map[string]object, int64, error) {
	var downloaded int64
	for _, name := range sortedKeys(f.Files) {
		obj := f.Files[name]
		if obj.Size > r.maxSize {
			return nil, downloaded, fmt.Errorf("%s is %d bytes, more than transfers.max_file_size (%d): not an adapter, or raise max_file_size; nothing was downloaded", name, obj.Size, r.maxSize)
		}
		if reuse(name, obj) {
			continue
		}
		if err := r.download(ctx, key, name, obj, dir); err != nil {
			return nil, downloaded, err
		}
		downloaded += obj.Size
	}
	return f.Files, downloaded, nil
}

// download fetches one object into dir and verifies it: the size always,
// and the MD5 when the ETag is a plain MD5 (not multipart, not KMS).
// The request carries If-Match, so an object replaced since the listing
// fails here and is fetched on a later poll, never mixed.
func (r *s3Remote) download(ctx context.Context, key, name string, obj object, dir *os.File) error {
	opts := minio.GetObjectOptions{}
	if obj.ETag != "" {
		if err := opts.SetMatchETag(obj.ETag); err != nil {
			return err
		}
	}
	rd, err := r.client.GetObject(ctx, r.s3.Bucket, r.s3.Prefix+key+"/"+name, opts)
	if err != nil {
		return fmt.Errorf("%s: %v", name, err)
	}
	defer rd.Close()
	info, err := rd.Stat()
	if err != nil {
		return fmt.Errorf("%s changed or went away since the listing (%v); it is fetched again on the next poll", name, err)
	}
	h := md5.New()
	err = writeNew(dir, name, func(w io.Writer) (int64, error) {
		return io.Copy(io.MultiWriter(w, h), io.LimitReader(rd, obj.Size+1))
	}, obj.Size)
	if err != nil {
		return err
	}
	if isPlainMD5(obj.ETag) && !encrypted(info.Metadata) {
		if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, obj.ETag) {
			return fmt.Errorf("%s: downloaded bytes have MD5 %s, the ETag says %s; it is fetched again on the next poll", name, got, obj.ETag)
		}
	}
	return nil
}

func isPlainMD5(etag string) bool {
	if len(etag) != 32 {
		return false
	}
	_, err := hex.DecodeString(etag)
	return err == nil
}

// encrypted reports server-side encryption whose ETag is not the MD5 of
// the bytes (SSE-KMS, SSE-C).
func encrypted(h http.Header) bool {
	return strings.EqualFold(h.Get("X-Amz-Server-Side-Encryption"), "aws:kms") ||
		strings.EqualFold(h.Get("X-Amz-Server-Side-Encryption"), "aws:kms:dsse") ||
		h.Get("X-Amz-Server-Side-Encryption-Customer-Algorithm") != ""
}

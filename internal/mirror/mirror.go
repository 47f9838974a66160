package s3source

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/adapterd/adapterd/internal/layout"
	"github.com/adapterd/adapterd/internal/metrics"
	"github.com/adapterd/adapterd/internal/spec"
)

// Options configures one mirror.
type Options struct {
	Source    spec.Source // Kind must be spec.SourceS3
	DropDir   string
	StateDir  string
	ReadyFile string
	Logger    *slog.Logger
	Metrics   *metrics.Metrics
	// Transport, if set, carries every S3 request; tests count requests
	// with it. nil uses minio-go's default.
	Transport http.RoundTripper
}

// SourceStatus is what status and /v1/sources show of one source.
type SourceStatus struct {
	Source string `json:"source"`
	// LastListing is the time of the last listing that succeeded; zero
	// before the first.
	LastListing time.Time `json:"last_listing,omitzero"`
	// Error is the last poll's problem: the listing failed, an empty
	// listing held removals, or a folder could not be mirrored. "" when
	// the last poll did everything it had to.
	Error string `json:"error,omitempty"`
	// Folders is how many folders this source has mirrored.
	Folders int `json:"folders"`
	// Waiting lists the folders seen but not complete yet: no ready_file
	// object, or a listing that changed since the last poll.
	Waiting []string `json:"waiting,omitempty"`
}

// Mirror mirrors one S3 source into the drop directory.
type Mirror struct {
	o         Options
	s3        *spec.S3Source
	name      string
	client    *minio.Client
	statePath string
	log       *slog.Logger

	// Only Poll touches these; Poll runs on one goroutine at a time.
	st   *state
	last map[string]map[string]object // each key's relevant objects at the last poll

	mu     sync.Mutex
	status SourceStatus
}

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
// standard credentials.
func newClient(s3 *spec.S3Source, transport http.RoundTripper) (*minio.Client, error) {
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

// New makes a mirror; nothing is listed until Poll or Run.
func New(o Options) (*Mirror, error) {
	if o.Source.Kind != spec.SourceS3 || o.Source.S3 == nil {
		return nil, fmt.Errorf("source %s is not an s3 source", o.Source.Name())
	}
	s3 := o.Source.S3
	m := &Mirror{o: o, s3: s3, name: o.Source.Name(), log: o.Logger, last: map[string]map[string]object{}}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	m.status.Source = m.name

	client, err := newClient(s3, o.Transport)
	if err != nil {
		return nil, fmt.Errorf("s3 source %s: %v; fix endpoint in the config", m.name, err)
	}
	m.client = client

	m.statePath = statePath(o.StateDir, m.name, s3.Endpoint)
	if m.st, err = loadState(m.statePath, m.name, s3.Endpoint); err != nil {
		return nil, err
	}
	m.status.Folders = len(m.st.Folders)
	cleanLeftovers(o.DropDir, func(key string) bool { _, ok := m.st.Folders[key]; return ok })
	return m, nil
}

// Name is the source's name in status, metrics and logs.
func (m *Mirror) Name() string { return m.name }

// Status returns the source's current status.
func (m *Mirror) Status() SourceStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.status
	s.Waiting = slices.Clone(s.Waiting)
	return s
}

// Run polls at once and then every interval until ctx is done.
func (m *Mirror) Run(ctx context.Context) {
	t := time.NewTicker(m.s3.Interval)
	defer t.Stop()
	for {
		m.Poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

var zeroTime time.Time

// errEmptyListing is the lost-mount rule for buckets.
var errEmptyListing = errors.New("lists no folders")

// Poll lists the source once and brings the drop directory in line with
// it: complete folders mirrored, gone folders removed. It returns the
// poll's problem, which Status also shows. The shape is observe (list,
// look at the drop dir), decide (pure, in plan.go), apply.
func (m *Mirror) Poll(ctx context.Context) error {
	listing, err := m.list(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// A listing that fails is no evidence of anything: keep every
		// folder and every record as they are.
		err = fmt.Errorf("s3 source %s cannot be listed: %s; nothing is removed; check the endpoint, the bucket name and the credentials", m.name, oneLine(err))
		m.report(time.Time{}, err, nil)
		return err
	}
	now := time.Now()
	if err := m.checkDropDir(); err != nil {
		m.report(now, err, nil)
		return err
	}
	owned := make(map[string]map[string]object, len(m.st.Folders))
	local := map[string]bool{}
	for key, f := range m.st.Folders {
		owned[key] = f.Files
		local[key] = exists(filepath.Join(m.o.DropDir, key))
	}
	for key := range listing {
		local[key] = exists(filepath.Join(m.o.DropDir, key))
	}
	p := decide(observation{listing: listing, last: m.last, owned: owned, local: local, readyFile: m.o.ReadyFile})
	m.last = listing

	if len(p.forget) > 0 {
		for _, key := range p.forget {
			delete(m.st.Folders, key)
		}
		if err := m.st.save(m.statePath); err != nil {
			m.log.Error("cannot write the state file", "source", m.name, "err", err)
		}
	}
	if p.hold > 0 {
		err = fmt.Errorf("s3 source %s %w, but it has %d mirrored folder(s) in drop_dir: an outage or a wrong prefix? nothing is removed; to retire them all, remove their folders from drop_dir by hand", m.name, errEmptyListing, p.hold)
		m.report(now, err, nil)
		return err
	}

	var problems []string
	for _, key := range p.clash {
		problems = append(problems, fmt.Sprintf("folder %s is in drop_dir but was not made by this source; remove or rename one of them", key))
	}
	for _, key := range p.mirror {
		if err := m.mirror(ctx, key, listing[key]); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			problems = append(problems, fmt.Sprintf("folder %s: %s", key, oneLine(err)))
		}
	}
	for _, key := range p.remove {
		if err := m.remove(key); err != nil {
			problems = append(problems, fmt.Sprintf("folder %s: cannot remove it: %s", key, oneLine(err)))
		}
	}
	if len(problems) > 0 {
		err = fmt.Errorf("s3 source %s: %s", m.name, strings.Join(problems, "; "))
	}
	m.report(now, err, p.waiting)
	return err
}

// checkDropDir refuses to write into a drop dir that is another directory
// than the one the folders were mirrored into, when none of them is there:
// a failed mount leaves an empty directory at the same path, and filling it
// would fill the disk under the mount point. A drop dir that still holds a
// mirrored folder (restored, or moved on purpose) is taken as the new one.
func (m *Mirror) checkDropDir() error {
	id, err := dirIdentity(m.o.DropDir)
	if err != nil {
		return fmt.Errorf("s3 source %s: drop_dir %s cannot be read (%v); nothing is mirrored or removed until it is back", m.name, m.o.DropDir, err)
	}
	if m.st.DropDir != nil && *m.st.DropDir == id {
		return nil
	}
	if m.st.DropDir != nil && len(m.st.Folders) > 0 {
		kept := false
		for key := range m.st.Folders {
			kept = kept || exists(filepath.Join(m.o.DropDir, key))
		}
		if !kept {
			return fmt.Errorf("s3 source %s: drop_dir %s is another directory than the one its %d folder(s) were mirrored into, and none of them is there: a failed mount? nothing is mirrored or removed; if the change is intended, remove %s", m.name, m.o.DropDir, len(m.st.Folders), m.statePath)
		}
	}
	m.st.DropDir = &id
	if err := m.st.save(m.statePath); err != nil {
		return fmt.Errorf("s3 source %s: cannot write the state file: %v; check that state_dir is writable", m.name, err)
	}
	return nil
}

// list returns each folder's relevant top-level objects. A key is in the
// result when it has any object under it, relevant or not.
func (m *Mirror) list(ctx context.Context) (map[string]map[string]object, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := map[string]map[string]object{}
	for o := range m.client.ListObjects(ctx, m.s3.Bucket, minio.ListObjectsOptions{Prefix: m.s3.Prefix}) {
		if o.Err != nil {
			return nil, o.Err
		}
		key, ok := strings.CutPrefix(o.Key, m.s3.Prefix)
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
		p := m.s3.Prefix + key + "/"
		for o := range m.client.ListObjects(ctx, m.s3.Bucket, minio.ListObjectsOptions{Prefix: p}) {
			if o.Err != nil {
				return nil, o.Err
			}
			name := strings.TrimPrefix(o.Key, p)
			if name == "" || strings.Contains(name, "/") {
				any = any || name != ""
				continue // the folder marker, or a subfolder: ignored as in a drop folder
			}
			any = true
			if layout.IsRelevantFile(name, m.o.ReadyFile) {
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

// mirror downloads one complete folder into a dot-folder and renames it into
// place. Objects unchanged since the last mirror are copied locally.
func (m *Mirror) mirror(ctx context.Context, key string, want map[string]object) error {
	dst := filepath.Join(m.o.DropDir, key)
	rec, owned := m.st.Folders[key]
	tmp, err := os.MkdirTemp(m.o.DropDir, tempName(key, partialTag))
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // a no-op once renamed into place
	var downloaded int64
	for _, name := range sortedKeys(want) {
		obj := want[name]
		if owned {
			if old, ok := rec.Files[name]; ok && old == obj && copyLocal(dst, tmp, name, obj.Size) == nil {
				continue
			}
		}
		if err := m.download(ctx, key, name, obj, filepath.Join(tmp, name)); err != nil {
			m.o.Metrics.SourceDownloaded(m.name, downloaded)
			return err
		}
		downloaded += obj.Size
	}
	m.o.Metrics.SourceDownloaded(m.name, downloaded)
	replace := owned && exists(dst)
	if replace {
		carryStatusFile(dst, tmp)
	}
	syncDir(tmp)
	if !owned {
		// Record ownership before the folder appears: a crash between the
		// two never leaves a folder this source made but does not know.
		// The empty file list makes the next poll check it again.
		m.st.Folders[key] = &folder{Files: map[string]object{}}
		if err := m.st.save(m.statePath); err != nil {
			delete(m.st.Folders, key)
			return fmt.Errorf("cannot write the state file: %v; check that state_dir is writable", err)
		}
	}
	if err := putInPlace(m.o.DropDir, key, tmp, dst, replace); err != nil {
		if !owned {
			// Someone put a folder there since the poll looked: it is
			// theirs, not ours.
			delete(m.st.Folders, key)
			m.st.save(m.statePath)
		}
		return err
	}
	syncDir(m.o.DropDir)
	m.st.Folders[key] = &folder{Files: want}
	if err := m.st.save(m.statePath); err != nil {
		return fmt.Errorf("cannot write the state file: %v; check that state_dir is writable", err)
	}
	m.log.Info("source folder mirrored", "source", m.name, "key", key, "files", len(want), "downloaded_bytes", downloaded)
	return nil
}

// download fetches one object into path and verifies it: the size always,
// and the MD5 when the ETag is a plain MD5 (not multipart, not KMS).
// The request carries If-Match, so an object replaced since the listing
// fails here and is fetched on a later poll, never mixed.
func (m *Mirror) download(ctx context.Context, key, name string, obj object, path string) error {
	opts := minio.GetObjectOptions{}
	if obj.ETag != "" {
		if err := opts.SetMatchETag(obj.ETag); err != nil {
			return err
		}
	}
	r, err := m.client.GetObject(ctx, m.s3.Bucket, m.s3.Prefix+key+"/"+name, opts)
	if err != nil {
		return fmt.Errorf("%s: %v", name, err)
	}
	defer r.Close()
	info, err := r.Stat()
	if err != nil {
		return fmt.Errorf("%s changed or went away since the listing (%v); it is fetched again on the next poll", name, err)
	}
	h := md5.New()
	err = writeNew(path, func(w io.Writer) (int64, error) {
		return io.Copy(io.MultiWriter(w, h), io.LimitReader(r, obj.Size+1))
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

// remove deletes a folder this source mirrored, after its prefix vanished.
// From here on the drop directory's rules apply: remove_grace, on_remove,
// and the lost-mount guard.
func (m *Mirror) remove(key string) error {
	if err := removeFolder(m.o.DropDir, key); err != nil {
		return err
	}
	delete(m.st.Folders, key)
	if err := m.st.save(m.statePath); err != nil {
		return fmt.Errorf("cannot write the state file: %v; check that state_dir is writable", err)
	}
	m.log.Info("source folder removed", "source", m.name, "key", key)
	return nil
}

// report records a poll's outcome for Status, metrics and the log. The log
// has one line per change, not one per poll.
func (m *Mirror) report(listed time.Time, err error, waiting []string) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	m.mu.Lock()
	old := m.status.Error
	if !listed.IsZero() {
		m.status.LastListing = listed
	}
	m.status.Error = msg
	m.status.Folders = len(m.st.Folders)
	m.status.Waiting = waiting
	m.mu.Unlock()
	m.o.Metrics.SourcePolled(m.name, listed, err == nil, len(m.st.Folders))
	switch {
	case msg != "" && msg != old:
		m.log.Warn("source poll failed", "source", m.name, "err", msg)
	case msg == "" && old != "":
		m.log.Info("source poll ok again", "source", m.name)
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return !errors.Is(err, fs.ErrNotExist)
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

func oneLine(err error) string { return spec.OneLine(err.Error()) }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Package s3test starts a real S3 server for tests: SeaweedFS's `weed mini`,
// built by scripts/seaweedfs.sh from the Go module proxy, on free loopback
// ports with its own data folder. There is no S3 fake: the point of the
// tests is what a real server lists, returns and refuses.
//
// Without the binary the tests fail, never skip (unless -short), so CI
// cannot pass by testing nothing.
package s3test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/adapterd/adapterd/internal/ollamatest"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// The credentials the server accepts. Tests hand them to the code under
// test through the environment, the first link of the AWS chain.
const (
	AccessKey = "adapterd-test"
	SecretKey = "adapterd-test-secret"
	Region    = "us-east-1"
)

// Server is one running SeaweedFS.
type Server struct {
	Dir    string
	Bucket string
	Addr   string // the S3 endpoint's host:port
	Client *minio.Client

	bin   string
	ports map[string]int
	mu    sync.Mutex
	cmd   *exec.Cmd
	log   *bytes.Buffer
	exit  chan struct{}
}

// Binary returns the weed binary: $ADAPTERD_TESTBED/bin/weed when that
// exists, else <module root>/.testbed/bin/weed.
func Binary() (string, error) {
	p, err := ollamatest.TestbedBinary("weed")
	if err != nil {
		return "", fmt.Errorf("SeaweedFS test server not built (%v); run scripts/seaweedfs.sh", err)
	}
	return p, nil
}

// Start starts a server with one empty bucket in a temp folder, and stops
// it when the test ends. With -short it skips the test.
func Start(t testing.TB, bucket string) *Server {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the SeaweedFS test server; run without -short")
	}
	s, err := New(t.TempDir(), bucket)
	if s != nil {
		t.Cleanup(s.Stop)
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// New starts a server with its data in dir and one empty bucket. The
// caller stops it.
func New(dir, bucket string) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir, Bucket: bucket, bin: bin}
	// A free port found now can be taken before weed binds it, and weed
	// keeps some ports for its gRPC numbering; try again with new ports.
	for attempt := 1; ; attempt++ {
		if err = s.pickPorts(); err == nil {
			if err = s.Restart(); err == nil {
				break
			}
		}
		if attempt == 3 {
			return nil, fmt.Errorf("SeaweedFS did not start: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Client.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		if exists, e2 := s.Client.BucketExists(ctx, bucket); e2 != nil || !exists {
			return s, fmt.Errorf("make bucket %s: %v", bucket, err)
		}
	}
	return s, nil
}

// Endpoint is the S3 URL for the config's endpoint key.
func (s *Server) Endpoint() string { return "http://" + s.Addr }

// Env sets the AWS environment the code under test reads: the server's
// credentials, and nothing from the real machine's profile or instance.
func Env(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", SecretKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_REGION", Region)
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
}

var portFlags = []string{
	"master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
	"filer.port", "filer.port.grpc", "s3.port", "s3.port.grpc",
	"admin.port", "admin.port.grpc",
}

func (s *Server) pickPorts() error {
	s.ports = map[string]int{}
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for _, f := range portFlags {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		ls = append(ls, l)
		s.ports[f] = l.Addr().(*net.TCPAddr).Port
	}
	s.Addr = "127.0.0.1:" + strconv.Itoa(s.ports["s3.port"])
	return nil
}

// Restart starts the server again on the same ports and data after Stop;
// tests use Stop and Restart to take S3 away mid-run.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("server is running")
	}
	args := []string{"mini", "-dir=" + s.Dir, "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		"-webdav=false", "-admin.ui=false", "-admin.port.legacy=0",
		"-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false"}
	for _, f := range portFlags {
		args = append(args, "-"+f+"="+strconv.Itoa(s.ports[f]))
	}
	cmd := exec.Command(s.bin, args...)
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+AccessKey, "AWS_SECRET_ACCESS_KEY="+SecretKey, "HOME="+s.Dir)
	s.log = &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = lockedWriter{s.log}, lockedWriter{s.log}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd = cmd
	exit := make(chan struct{})
	s.exit = exit
	go func() { cmd.Wait(); close(exit) }()

	client, err := minio.New(s.Addr, &minio.Options{
		Creds:        credentials.NewStaticV4(AccessKey, SecretKey, ""),
		Region:       Region,
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		return err
	}
	s.Client = client
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exit:
			logMu.Lock()
			out := s.log.String()
			logMu.Unlock()
			s.cmd = nil
			return fmt.Errorf("weed mini exited at startup: %s", tail(out, 2000))
		default:
		}
		// Ready when S3 answers a signed request, which needs the filer
		// and IAM behind it, not only the listener.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s.mu.Unlock()
		_, err = client.ListBuckets(ctx)
		s.mu.Lock()
		cancel()
		if err == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.stopLocked()
	return fmt.Errorf("S3 on %s did not answer within 60s (last: %v)", s.Addr, err)
}

// Stop stops the server; its data stays for Restart.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

func (s *Server) stopLocked() {
	if s.cmd == nil {
		return
	}
	pid := s.cmd.Process.Pid
	syscall.Kill(-pid, syscall.SIGTERM)
	exit := s.exit
	s.mu.Unlock()
	select {
	case <-exit:
	case <-time.After(15 * time.Second):
		syscall.Kill(-pid, syscall.SIGKILL)
		<-exit
	}
	s.mu.Lock()
	s.cmd = nil
}

// Log is the server's output so far.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	logMu.Lock()
	defer logMu.Unlock()
	if s.log == nil {
		return ""
	}
	return s.log.String()
}

// Put uploads data as bucket/key.
func (s *Server) Put(t testing.TB, key string, data []byte) {
	t.Helper()
	_, err := s.Client.PutObject(context.Background(), s.Bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{})
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

// PutDir uploads every file at the top of dir under prefix (which ends in
// "/"), in name order.
func (s *Server) PutDir(t testing.TB, prefix, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		s.Put(t, prefix+e.Name(), b)
	}
}

// Delete removes every object under prefix.
func (s *Server) Delete(t testing.TB, prefix string) {
	t.Helper()
	ctx := context.Background()
	for o := range s.Client.ListObjects(ctx, s.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("list %s: %v", prefix, o.Err)
		}
		if err := s.Client.RemoveObject(ctx, s.Bucket, o.Key, minio.RemoveObjectOptions{}); err != nil {
			t.Fatalf("delete %s: %v", o.Key, err)
		}
	}
}

// CountingTransport counts the requests that pass through it, by kind. It
// is a counter in front of the real server, not a fake.
type CountingTransport struct {
	Base http.RoundTripper
	mu   sync.Mutex
	gets int
	reqs int
}

func (c *CountingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.reqs++
	q := r.URL.Query()
	if r.Method == http.MethodGet && !q.Has("list-type") && !q.Has("location") && !q.Has("prefix") && !q.Has("delimiter") {
		c.gets++
	}
	c.mu.Unlock()
	base := c.Base
	if base == nil {
		base = http.DefaultTransport
	}
	return base.RoundTrip(r)
}

// ObjectGets is how many object downloads (GET of an object, not a
// listing) went through.
func (c *CountingTransport) ObjectGets() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gets
}

// Requests is how many requests of any kind went through.
func (c *CountingTransport) Requests() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reqs
}

// lockedWriter appends to a server's log from exec's copying goroutines,
// which run while other code reads the log.
type lockedWriter struct{ w *bytes.Buffer }

func (l lockedWriter) Write(p []byte) (int, error) {
	logMu.Lock()
	defer logMu.Unlock()
	return l.w.Write(p)
}

var logMu sync.Mutex

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

package mirror_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/adapterd/adapterd/internal/mirror"
	"github.com/adapterd/adapterd/internal/mirror/s3test"
	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/testfixture"
)

// BenchmarkFleetMirror: two hosts mirror N adapters of SIZE MiB each (env
// ADAPTERD_BENCH_N, default 50; ADAPTERD_BENCH_MIB, default 16) from the
// real SeaweedFS, against two plain download loops of the same objects
// through the same client, in the same run. Then each host restarts and
// polls again: it must download nothing.
//
//	go test -run '^$' -bench BenchmarkFleetMirror -benchtime 1x ./internal/mirror/
func BenchmarkFleetMirror(b *testing.B) {
	if shared == nil {
		b.Skip("needs the SeaweedFS test server")
	}
	n, mib := envInt("ADAPTERD_BENCH_N", 50), envInt("ADAPTERD_BENCH_MIB", 16)
	os.Setenv("AWS_ACCESS_KEY_ID", s3test.AccessKey)
	os.Setenv("AWS_SECRET_ACCESS_KEY", s3test.SecretKey)
	os.Setenv("AWS_REGION", s3test.Region)
	prefix := fmt.Sprintf("bench-%d/", time.Now().UnixNano())
	src := &spec.S3Source{URL: "s3://" + bucket + "/" + prefix, Bucket: bucket, Prefix: prefix,
		Endpoint: shared.Endpoint(), PathStyle: true, Interval: time.Hour}
	ctx := context.Background()
	var objects []string
	var total int64
	for i := 0; i < n; i++ {
		dir := b.TempDir()
		a := testfixture.Sized(testfixture.TinyLlama(), int64(mib)<<20, uint64(9000+i))
		path := filepath.Join(dir, "lora.gguf")
		if err := a.WriteGGUF(path); err != nil {
			b.Fatal(err)
		}
		fi, _ := os.Stat(path)
		total += fi.Size()
		key := fmt.Sprintf("a%03d", i)
		if _, err := mirror.Publish(ctx, src, key, dir, []string{"lora.gguf"}, "READY", nil); err != nil {
			b.Fatal(err)
		}
		objects = append(objects, prefix+key+"/lora.gguf")
		os.RemoveAll(dir)
	}
	b.ResetTimer()
	for range b.N {
		// Peer: per host, a loop that GETs every object to a file.
		loop := func() time.Duration {
			c := shared.Client
			dir := b.TempDir()
			start := time.Now()
			for i, o := range objects {
				obj, err := c.GetObject(ctx, bucket, o, minio.GetObjectOptions{})
				if err != nil {
					b.Fatal(err)
				}
				f, err := os.Create(filepath.Join(dir, strconv.Itoa(i)))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(f, obj); err != nil {
					b.Fatal(err)
				}
				f.Close()
				obj.Close()
			}
			d := time.Since(start)
			os.RemoveAll(dir)
			return d
		}
		type host struct {
			drop, state string
			took        time.Duration // first run
			gets        int           // object GETs of the last run
		}
		hosts := []*host{{drop: b.TempDir(), state: b.TempDir()}, {drop: b.TempDir(), state: b.TempDir()}}
		mirror := func(h *host) {
			count := &s3test.CountingTransport{}
			m, err := mirror.New(mirror.Options{Source: spec.Source{Kind: spec.SourceS3, S3: src},
				DropDir: h.drop, StateDir: h.state, ReadyFile: "READY", Transport: count})
			if err != nil {
				b.Error(err)
				return
			}
			start := time.Now()
			if err := m.Poll(ctx); err != nil {
				b.Error(err)
			}
			if h.took == 0 {
				h.took = time.Since(start)
			}
			h.gets = count.ObjectGets()
		}
		var loops [2]time.Duration
		var wg sync.WaitGroup
		for i := range loops {
			wg.Add(1)
			go func() { defer wg.Done(); loops[i] = loop() }()
		}
		wg.Wait()
		for _, h := range hosts {
			wg.Add(1)
			go func() { defer wg.Done(); mirror(h) }()
		}
		wg.Wait()
		first := []int{hosts[0].gets, hosts[1].gets}
		for _, h := range hosts {
			mirror(h) // a restart: a new Mirror on the same drop and state dirs
		}
		b.Logf("%d adapters × %d MiB (%.0f MiB), two hosts at once", n, mib, float64(total)/(1<<20))
		for i, h := range hosts {
			b.Logf("host %d: mirrored in %s vs plain download loop %s (%.2f×); object GETs first run %d (%d objects), after a restart %d",
				i+1, h.took.Round(time.Millisecond), loops[i].Round(time.Millisecond), float64(h.took)/float64(loops[i]), first[i], n, h.gets)
		}
		b.ReportMetric(float64(hosts[0].took)/float64(loops[0]), "ratio-host1")
		b.ReportMetric(float64(hosts[1].took)/float64(loops[1]), "ratio-host2")
		b.ReportMetric(float64(hosts[0].gets+hosts[1].gets), "gets-after-restart")
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

package hub_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/adapterd/adapterd/internal/hub"
	"github.com/adapterd/adapterd/internal/hub/hubtest"
	"github.com/adapterd/adapterd/internal/testfixture"
)

// BenchmarkFetchVsCurl fetches a PEFT adapter of ADAPTERD_BENCH_MIB MiB
// (default 256) from the fake hub, through its redirect to the CDN host,
// into a folder and a fresh Hugging Face cache, as fetch-adapter does; and
// has curl download the same files from the same resolve URLs (following
// the same redirect) in the same run, alternating, ADAPTERD_BENCH_ROUNDS
// times (default 5). It reports the median of the paired ratios (target ≤
// 1.1), and the bytes the hub served for a second fetch with the filled
// cache (must be 0). Two more references, in the same rounds: curl piped
// through openssl dgst -sha256 (a download that is verified, as adapterd's
// is), and adapterd without a cache (one copy of the bytes, one fsync, not
// two).
//
//	go test -run '^$' -bench BenchmarkFetchVsCurl -benchtime 1x ./internal/hub/
func BenchmarkFetchVsCurl(b *testing.B) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		b.Skip("curl is not installed (apt-get install -y curl): the fetch is measured against curl of the same files")
	}
	mib := benchEnv("ADAPTERD_BENCH_MIB", 256)
	rounds := benchEnv("ADAPTERD_BENCH_ROUNDS", 5)
	src := b.TempDir()
	if err := testfixture.Sized(testfixture.TinyLlama(), int64(mib)<<20, 1).WritePEFT(src); err != nil {
		b.Fatal(err)
	}
	files := readDir(b, src)
	var total int64
	for _, f := range files {
		total += int64(len(f))
	}
	s := hubtest.New(b)
	commit := s.Commit("org/big-lora", "main", files)
	ctx := context.Background()

	// CPU time, which the other jobs on a shared machine disturb less than
	// wall time: this process's (the fake hub's, and adapterd's client's
	// while it fetches) and its children's (curl's).
	var fetchCPU, serverCPU, curlCPU []time.Duration
	fetch := func(cache string) (time.Duration, int64) {
		dir := b.TempDir()
		c := client(s, "")
		c.CacheDir = cache
		served := s.BytesServed()
		cpu := cpuTime(syscall.RUSAGE_SELF)
		start := time.Now()
		if _, err := c.Fetch(ctx, hub.Request{Repo: "org/big-lora"}, dir); err != nil {
			b.Fatal(err)
		}
		d := time.Since(start)
		if cache != "" && s.BytesServed()-served > 0 {
			fetchCPU = append(fetchCPU, cpuTime(syscall.RUSAGE_SELF)-cpu)
		}
		os.RemoveAll(dir)
		return d, s.BytesServed() - served
	}
	curlAll := func(verify bool) time.Duration {
		dir := b.TempDir()
		self, children := cpuTime(syscall.RUSAGE_SELF), cpuTime(syscall.RUSAGE_CHILDREN)
		defer func() {
			if !verify {
				serverCPU = append(serverCPU, cpuTime(syscall.RUSAGE_SELF)-self)
				curlCPU = append(curlCPU, cpuTime(syscall.RUSAGE_CHILDREN)-children)
			}
		}()
		start := time.Now()
		for name := range files {
			u := fmt.Sprintf("%s/org/big-lora/resolve/%s/%s", s.URL(), commit, name)
			out := filepath.Join(dir, name)
			cmd := exec.Command(curl, "-sSfL", "-o", out, u)
			if verify {
				cmd = exec.Command("bash", "-c", `set -o pipefail; "$0" -sSfL "$1" | tee "$2" | openssl dgst -sha256 >/dev/null`, curl, u, out)
			}
			if msg, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("curl %s: %v: %s", u, err, msg)
			}
		}
		d := time.Since(start)
		os.RemoveAll(dir)
		return d
	}

	b.ResetTimer()
	for range b.N {
		var ratios, verifiedRatios, directRatios []float64
		var fetched, curled, verified, direct, cached []time.Duration
		var again int64
		for range rounds {
			cache := b.TempDir()
			c := curlAll(false)
			f, n := fetch(cache)
			if n != total {
				b.Fatalf("the first fetch downloaded %d bytes, want %d", n, total)
			}
			var a time.Duration
			a, again = fetch(cache)
			cached = append(cached, a)
			os.RemoveAll(cache)
			v := curlAll(true)
			d, _ := fetch("")
			fetched, curled, verified, direct = append(fetched, f), append(curled, c), append(verified, v), append(direct, d)
			ratios = append(ratios, float64(f)/float64(c))
			verifiedRatios = append(verifiedRatios, float64(f)/float64(v))
			directRatios = append(directRatios, float64(d)/float64(c))
		}
		med := medianF(ratios)
		b.Logf("%.0f MiB adapter, %d rounds", float64(total)/(1<<20), rounds)
		b.Logf("adapterd fetch with cache %v", fetched)
		b.Logf("curl                      %v", curled)
		b.Logf("curl | tee | openssl sha256 %v", verified)
		b.Logf("adapterd fetch, no cache  %v", direct)
		b.Logf("second fetch, from cache  %v", cached)
		b.Logf("median ratios: fetch/curl %.2f, fetch/(curl|openssl sha256) %.2f, no-cache fetch/curl %.2f; second fetch downloaded %d bytes",
			med, medianF(verifiedRatios), medianF(directRatios), again)
		// adapterd's client CPU is the process's during the fetch less
		// what the fake hub spent serving curl the same bytes.
		client := median(fetchCPU) - median(serverCPU)
		b.Logf("CPU (median): adapterd fetch %v (the fake hub serving it about %v of that), curl %v: client CPU %.2f× curl's",
			median(fetchCPU), median(serverCPU), median(curlCPU), float64(client)/float64(median(curlCPU)))
		b.ReportMetric(float64(client)/float64(median(curlCPU)), "cpu-x-curl")
		b.ReportMetric(med, "x-curl")
		b.ReportMetric(medianF(verifiedRatios), "x-curl-openssl-sha256")
		b.ReportMetric(float64(again), "bytes-refetched")
		b.ReportMetric(float64(total)/(1<<20)/median(fetched).Seconds(), "MiB/s")
	}
}

func medianF(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func benchEnv(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// cpuTime is the user and system CPU time of who (RUSAGE_SELF or
// RUSAGE_CHILDREN, the waited-for children) so far.
func cpuTime(who int) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

package hub_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
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

	fetch := func(cache string) (time.Duration, int64) {
		dir := b.TempDir()
		c := client(s, "")
		c.CacheDir = cache
		served := s.BytesServed()
		start := time.Now()
		if _, err := c.Fetch(ctx, hub.Request{Repo: "org/big-lora"}, dir); err != nil {
			b.Fatal(err)
		}
		d := time.Since(start)
		os.RemoveAll(dir)
		return d, s.BytesServed() - served
	}
	curlAll := func(verify bool) time.Duration {
		dir := b.TempDir()
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
		var fetched, curled, verified, direct []time.Duration
		var again int64
		for range rounds {
			cache := b.TempDir()
			c := curlAll(false)
			f, n := fetch(cache)
			if n != total {
				b.Fatalf("the first fetch downloaded %d bytes, want %d", n, total)
			}
			_, again = fetch(cache)
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
		b.Logf("median ratios: fetch/curl %.2f, fetch/(curl|openssl sha256) %.2f, no-cache fetch/curl %.2f; second fetch downloaded %d bytes",
			med, medianF(verifiedRatios), medianF(directRatios), again)
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

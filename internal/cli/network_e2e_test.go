package cli

import (
	"crypto/tls"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/adapterd/adapterd/internal/hub/hubtest"
	"github.com/adapterd/adapterd/internal/memtest"
)

// peakRSSBound is the most memory any command here may take under attack.
// The adapterd binary idles at about 20 MiB; before the listing was
// bounded, the paging-forever hub took the daemon past 1.8 GiB.
const peakRSSBound = 150 << 20

// measured is one finished run of the real binary.
type measured struct {
	stdout, stderr string
	code           int
	peakRSS        int64
	elapsed        time.Duration
}

// runMeasured runs the binary to completion, as uid when cred is set, and
// reports its peak resident set.
func runMeasured(t *testing.T, cred *syscall.Credential, env []string, args ...string) measured {
	t.Helper()
	cmd := exec.Command(adapterdBinary(t), args...)
	cmd.Env = cleanEnv(env...)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(waitLong):
		cmd.Process.Kill()
		<-done
		t.Fatalf("adapterd %v did not finish within %s", args, waitLong)
	}
	m := measured{stdout: stdout.String(), stderr: stderr.String(), elapsed: time.Since(start), peakRSS: memtest.PeakRSS(cmd.ProcessState)}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		m.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return m
}

// silentServer is a faultInjectingServer that accepts connections and
// never answers, as a wedged proxy does.
func silentServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return "http://" + ln.Addr().String()
}

// TestFetchAdapterAgainstAHostileHubEndsWithAClearError makes the faults
// of a hostile or broken hub against `adapterd fetch-adapter --drop`: a
// listing that pages forever, a body that trickles, a size that lies, a
// server that never answers. Each ends with one line naming the bound that
// stopped it, before its deadline, with nothing kept in the drop dir and
// memory under peakRSSBound.
func TestFetchAdapterAgainstAHostileHubEndsWithAClearError(t *testing.T) {
	files := writeFolder(t, peftFolder(601))
	tests := []struct {
		name    string
		setup   func(s *hubtest.Server)
		silent  bool
		flags   []string
		want    string
		maxTime time.Duration
	}{
		{
			name:    "pages forever",
			setup:   func(s *hubtest.Server) { s.SetHostile(hubtest.Hostile{PagesForever: true}) },
			want:    "the tree listing has more than 100000 entries",
			maxTime: time.Minute,
		},
		{
			name: "pages forever with long names",
			setup: func(s *hubtest.Server) {
				s.SetHostile(hubtest.Hostile{PagesForever: true, NameBytes: 2000})
			},
			want:    "the tree listing is larger than 32 MiB",
			maxTime: time.Minute,
		},
		{
			name: "a path longer than PATH_MAX",
			setup: func(s *hubtest.Server) {
				s.SetHostile(hubtest.Hostile{PagesForever: true, NameBytes: 5000})
			},
			want:    "the tree listing has a path of 5",
			maxTime: time.Minute,
		},
		{
			name: "trickles slower than the idle timeout",
			setup: func(s *hubtest.Server) {
				s.Fault("org/bot", "adapter_model.safetensors", hubtest.Trickle)
				s.SetHostile(hubtest.Hostile{TrickleGap: 5 * time.Second})
			},
			flags:   []string{"--idle-timeout", "2s"},
			want:    "the server sent nothing for 2s, so the transfer was cut (--idle-timeout)",
			maxTime: time.Minute,
		},
		{
			name: "trickles just fast enough, forever",
			setup: func(s *hubtest.Server) {
				s.Fault("org/bot", "adapter_model.safetensors", hubtest.Trickle)
				s.SetHostile(hubtest.Hostile{TrickleGap: 200 * time.Millisecond})
			},
			flags:   []string{"--idle-timeout", "2s", "--timeout", "4s"},
			want:    "the download was cut after 4s (--timeout)",
			maxTime: time.Minute,
		},
		{
			name:    "lies about the size",
			setup:   func(s *hubtest.Server) { s.Fault("org/bot", "adapter_model.safetensors", hubtest.LieAboutSize) },
			want:    "is 1099511627776 bytes, more than max_file_size",
			maxTime: time.Minute,
		},
		{
			name:    "never answers",
			silent:  true,
			flags:   []string{"--idle-timeout", "2s"},
			want:    "the server sent nothing for 2s, so the transfer was cut (--idle-timeout)",
			maxTime: time.Minute,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := hubtest.New(t)
			s.Commit("org/bot", "main", map[string][]byte{
				"adapter_config.json":       files["adapter_config.json"],
				"adapter_model.safetensors": files["adapter_model.safetensors"],
			})
			env := hubEnv(t, s, s.Token)
			if tt.setup != nil {
				tt.setup(s)
			}
			if tt.silent {
				env = append(env, "HF_ENDPOINT="+silentServer(t))
			}
			drop := t.TempDir()
			args := append([]string{"fetch-adapter", "org/bot", "--drop", drop, "--base", baseModel}, tt.flags...)
			m := runMeasured(t, nil, env, args...)
			t.Logf("exit %d after %s, peak RSS %d MiB: %s", m.code, m.elapsed.Round(time.Millisecond), m.peakRSS>>20, strings.TrimSpace(m.stderr))
			if m.code == 0 {
				t.Fatalf("fetch-adapter succeeded against a hostile hub")
			}
			if !strings.Contains(m.stderr, tt.want) {
				t.Errorf("stderr %q does not say %q", m.stderr, tt.want)
			}
			if lines := strings.Count(strings.TrimSpace(m.stderr), "\n"); lines > 0 {
				t.Errorf("error is %d lines, want one: %q", lines+1, m.stderr)
			}
			if m.peakRSS > peakRSSBound {
				t.Errorf("peak RSS %d MiB, bound %d MiB", m.peakRSS>>20, peakRSSBound>>20)
			}
			if m.elapsed > tt.maxTime {
				t.Errorf("took %s, past its deadline %s", m.elapsed, tt.maxTime)
			}
			if ents, _ := os.ReadDir(drop); len(ents) != 0 {
				t.Errorf("the drop dir holds %v after a failed fetch", ents)
			}
		})
	}
}

// TestFetchAdapterNeverSendsTheTokenInCleartext puts the hub behind https
// and has it send the client to http on the same host: by a redirect of
// the revision request, and by a tree listing's Link to its next page. The
// http side records every Authorization header it gets; there must be
// none, and the fetch fails saying why.
func TestFetchAdapterNeverSendsTheTokenInCleartext(t *testing.T) {
	files := writeFolder(t, peftFolder(602))
	s := hubtest.New(t)
	s.Commit("org/bot", "main", map[string][]byte{
		"adapter_config.json":       files["adapter_config.json"],
		"adapter_model.safetensors": files["adapter_model.safetensors"],
	})

	var mu sync.Mutex
	var leaked []string
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		if a := r.Header.Get("Authorization"); a != "" {
			leaked = append(leaked, a)
		}
		mu.Unlock()
		// Answer as the hub would, so a client that went on would succeed.
		proxy(w, r, s.URL())
	}))
	defer plain.Close()
	_, plainPort, _ := net.SplitHostPort(plain.Listener.Addr().String())

	for _, mode := range []string{"redirect", "link"} {
		t.Run(mode, func(t *testing.T) {
			// downgradingHub is a faultInjectingProxy in front of the fake
			// hub, over TLS, that points the client at http.
			downgradingHub := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				down := "http://127.0.0.1:" + plainPort + r.URL.RequestURI()
				switch {
				case mode == "redirect" && strings.Contains(r.URL.Path, "/revision/"):
					http.Redirect(w, r, down, http.StatusFound)
				case mode == "link" && strings.Contains(r.URL.Path, "/tree/"):
					w.Header().Set("Link", "<"+down+"&cursor=0>; rel=\"next\"")
					w.Header().Set("Content-Type", "application/json")
					w.Write([]byte("[]"))
				default:
					proxy(w, r, s.URL())
				}
			}))
			defer downgradingHub.Close()
			ca := filepath.Join(t.TempDir(), "ca.pem")
			writeCert(t, ca, downgradingHub.TLS)

			drop := t.TempDir()
			env := append(hubEnv(t, s, s.Token), "HF_ENDPOINT="+downgradingHub.URL, "SSL_CERT_FILE="+ca)
			m := runMeasured(t, nil, env, "fetch-adapter", "org/bot", "--drop", drop, "--base", baseModel)
			mu.Lock()
			got := append([]string(nil), leaked...)
			mu.Unlock()
			if len(got) > 0 {
				t.Fatalf("the token went over plain http: %q", got)
			}
			if m.code == 0 {
				t.Fatalf("fetch-adapter followed the hub from https to http and succeeded")
			}
			if !strings.Contains(m.stderr, "https to http") {
				t.Errorf("stderr %q does not say the downgrade was refused", m.stderr)
			}
			if strings.Contains(m.stderr, s.Token) {
				t.Errorf("stderr shows the token: %q", m.stderr)
			}
			if ents, _ := os.ReadDir(drop); len(ents) != 0 {
				t.Errorf("the drop dir holds %v", ents)
			}
		})
	}
}

// proxy forwards r to the fake hub at base and copies its answer.
func proxy(w http.ResponseWriter, r *http.Request, base string) {
	req, _ := http.NewRequestWithContext(r.Context(), r.Method, base+r.URL.RequestURI(), r.Body)
	req.Header = r.Header.Clone()
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		w.Write(buf[:n])
		if err != nil {
			return
		}
	}
}

func writeCert(t *testing.T, path string, cfg *tls.Config) {
	t.Helper()
	var b []byte
	for _, c := range cfg.Certificates {
		for _, der := range c.Certificate {
			b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
		}
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestFetchAdapterRefusesAPasswordInTheEndpoint gives HF_ENDPOINT a
// user:password: it is refused before any request, and the password shows
// nowhere.
func TestFetchAdapterRefusesAPasswordInTheEndpoint(t *testing.T) {
	s := hubtest.New(t)
	const secret = "s3cretPassw0rd"
	u := strings.Replace(s.URL(), "http://", "http://admin:"+secret+"@", 1)
	drop := t.TempDir()
	m := runMeasured(t, nil, append(hubEnv(t, s, ""), "HF_ENDPOINT="+u), "fetch-adapter", "org/bot", "--drop", drop, "--base", baseModel)
	if m.code == 0 {
		t.Fatal("fetch-adapter accepted an endpoint with a password")
	}
	if !strings.Contains(m.stderr, "carries a user name or password") {
		t.Errorf("stderr %q does not say why", m.stderr)
	}
	if strings.Contains(m.stderr+m.stdout, secret) {
		t.Errorf("the password leaked into the output: %q", m.stderr)
	}
	if s.TreePages() != 0 {
		t.Errorf("the hub was asked for a listing")
	}
	if ents, _ := os.ReadDir(drop); len(ents) != 0 {
		t.Errorf("the drop dir holds %v", ents)
	}
}

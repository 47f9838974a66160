package cli

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/adapterd/adapterd/internal/hub/hubtest"
	"github.com/adapterd/adapterd/internal/memtest"
	"github.com/adapterd/adapterd/internal/mirror"
)

// nobody is the second real uid the attack tests run as.
var nobody = &syscall.Credential{Uid: 65534, Gid: 65534}

// noOllama is an address nothing listens on: the control API and the
// mirror work without Ollama, and these tests need neither models nor a
// server.
const noOllama = "http://127.0.0.1:9"

// openToOthers lets another uid reach the test's files (t.TempDir is 0700
// and so is its parent), as /etc/adapterd and /run/adapterd are.
func openToOthers(t *testing.T, st *setup) {
	t.Helper()
	for _, d := range []string{filepath.Dir(st.root), st.root} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(st.config, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestControlAPIRefusesOtherUsersAndWebPages makes the attacks of
// finding 1 against a running daemon: another local uid over the control
// socket, and over TCP a web page's cross-origin POST, a DNS-rebinding
// Host, a text/plain body, a wrong token. Each is refused with a reason,
// and the daemon never logs a confirmed removal; root over the socket,
// and the token holder over TCP, are served.
func TestControlAPIRefusesOtherUsersAndWebPages(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a child as another uid")
	}
	st := newSetup(t, noOllama)
	// A short socket path: sun_path holds 107 bytes.
	sockDir, err := os.MkdirTemp("", "adapterd-sock")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	os.Chmod(sockDir, 0o755)
	sock := filepath.Join(sockDir, "adapterd.sock")
	tokenFile := filepath.Join(st.root, "token")
	const token = "test-token-0123456789"
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	st.writeConfig(t, "api: {socket: "+sock+", token_file: "+tokenFile+"}\n")
	openToOthers(t, st)
	p := startDaemon(t, st)
	p.waitFor("the control socket", waitShort, func() bool { _, err := os.Stat(sock); return err == nil })

	t.Run("another uid over the socket", func(t *testing.T) {
		m := runMeasured(t, nobody, nil, "confirm-removals", "--config", st.config)
		if m.code == 0 {
			t.Fatalf("uid 65534 confirmed removals: %q", m.stdout)
		}
		if !strings.Contains(m.stderr, "uid 65534 may not use the control socket") {
			t.Errorf("stderr %q does not say who was refused", m.stderr)
		}
	})
	t.Run("root over the socket", func(t *testing.T) {
		m := runMeasured(t, nil, nil, "confirm-removals", "--config", st.config)
		if m.code != 0 || !strings.Contains(m.stdout, "nothing to confirm") {
			t.Fatalf("root: exit %d, stdout %q, stderr %q", m.code, m.stdout, m.stderr)
		}
	})
	t.Run("another uid reads status over listen", func(t *testing.T) {
		// The socket refuses it; listen: on loopback still serves reads.
		m := runMeasured(t, nobody, nil, "status", "--config", st.config)
		if m.code != 0 {
			t.Fatalf("status as uid 65534: exit %d, stderr %q", m.code, m.stderr)
		}
	})

	post := func(t *testing.T, mod func(*http.Request)) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "http://"+st.listen+"/v1/removals/confirm", strings.NewReader("{}"))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		mod(req)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	tests := []struct {
		name string
		mod  func(*http.Request)
		code int
		want string
	}{
		{"cross-origin text/plain POST, as a web page sends", func(r *http.Request) {
			r.Header.Del("Authorization")
			r.Header.Set("Content-Type", "text/plain")
			r.Header.Set("Origin", "http://evil.example")
		}, 401, "needs Authorization: Bearer"},
		{"cross-origin POST with the token", func(r *http.Request) { r.Header.Set("Origin", "http://evil.example") }, 403, "cross-origin request"},
		{"DNS rebinding: a foreign Host", func(r *http.Request) { r.Host = "evil.example:9464" }, 403, "is not this host"},
		{"text/plain with the token", func(r *http.Request) { r.Header.Set("Content-Type", "text/plain") }, 415, "application/json"},
		{"a wrong token", func(r *http.Request) { r.Header.Set("Authorization", "Bearer nope") }, 401, "needs Authorization"},
		{"the token, JSON, same origin", func(r *http.Request) { r.Header.Set("Origin", "http://"+st.listen) }, 200, "nothing to confirm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := post(t, tt.mod)
			if code != tt.code || !strings.Contains(body, tt.want) {
				t.Errorf("answer %d %q, want %d with %q", code, body, tt.code, tt.want)
			}
		})
	}
	if strings.Contains(p.log(), "removals confirmed") {
		t.Errorf("the daemon confirmed removals:\n%s", p.log())
	}
}

// TestControlAPIWithoutTokenServesNoMutationOnTCP: with no api.token_file
// a POST on listen: is refused whoever sends it, and names the socket.
func TestControlAPIWithoutTokenServesNoMutationOnTCP(t *testing.T) {
	st := newSetup(t, noOllama)
	p := startDaemon(t, st)
	p.waitFor("the HTTP server", waitShort, func() bool { c, _ := p.get("/healthz"); return c == 200 })
	req, _ := http.NewRequest(http.MethodPost, "http://"+st.listen+"/v1/removals/confirm", strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || !strings.Contains(string(b), "control socket only") {
		t.Errorf("POST on TCP without a token: %d %q", resp.StatusCode, b)
	}
}

// TestListenOffLoopbackServesOnlyMetrics: a listen: on every interface
// serves what Prometheus needs and hides the adapters and sources.
func TestListenOffLoopbackServesOnlyMetrics(t *testing.T) {
	st := newSetup(t, noOllama)
	_, port, _ := strings.Cut(st.listen, ":")
	st.listen = "0.0.0.0:" + port
	st.writeConfig(t, "")
	p := startDaemon(t, st)
	st.listen = "127.0.0.1:" + port
	p.waitFor("the HTTP server", waitShort, func() bool { c, _ := p.get("/healthz"); return c == 200 })
	for path, want := range map[string]int{"/metrics": 200, "/healthz": 200, "/v1/adapters": 404, "/v1/sources": 404} {
		if code, body := p.get(path); code != want {
			t.Errorf("GET %s: %d %q, want %d", path, code, body, want)
		}
	}
}

func sourcesOf(p *proc) []mirror.SourceStatus {
	code, body := p.get("/v1/sources")
	if code != 200 {
		return nil
	}
	var list []mirror.SourceStatus
	json.Unmarshal([]byte(body), &list)
	return list
}

// TestHubSourceUnderAttackIsCutAndReported runs the daemon against a
// hostile hub: a listing that pages forever, a download that trickles past
// the poll deadline, and an endpoint with a password. /v1/sources shows
// the poll in progress, then the error that cut it; nothing appears in the
// drop dir, the password shows nowhere, and the daemon's peak RSS stays
// under peakRSSBound.
func TestHubSourceUnderAttackIsCutAndReported(t *testing.T) {
	files := writeFolder(t, peftFolder(611))
	tests := []struct {
		name       string
		setup      func(s *hubtest.Server)
		endpoint   func(s *hubtest.Server) string
		transfers  string
		want       string
		inProgress bool
	}{
		{name: "pages forever", setup: func(s *hubtest.Server) { s.SetHostile(hubtest.Hostile{PagesForever: true}) },
			want: "the tree listing has more than 100000 entries"},
		{name: "trickles past the poll deadline", setup: func(s *hubtest.Server) {
			s.Fault("org/bot", "adapter_model.safetensors", hubtest.Trickle)
			s.SetHostile(hubtest.Hostile{TrickleGap: 200 * time.Millisecond})
		}, transfers: "transfers: {idle_timeout: 10s, poll_timeout: 4s}\n",
			want: "the poll was cut after 4s (transfers.poll_timeout)", inProgress: true},
		{name: "a password in HF_ENDPOINT", endpoint: func(s *hubtest.Server) string {
			return strings.Replace(s.URL(), "http://", "http://admin:s3cretPassw0rd@", 1)
		}, want: "carries a user name or password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := hubtest.New(t)
			s.Commit("org/bot", "main", map[string][]byte{
				"adapter_config.json":       files["adapter_config.json"],
				"adapter_model.safetensors": files["adapter_model.safetensors"],
			})
			if tt.setup != nil {
				tt.setup(s)
			}
			env := hubEnv(t, s, s.Token)
			if tt.endpoint != nil {
				env = append(env, "HF_ENDPOINT="+tt.endpoint(s))
			}
			st := newSetup(t, noOllama)
			st.writeConfig(t, "sources:\n  - hub: org/bot\n    interval: 1h\n"+tt.transfers)
			p := startDaemon(t, st, env...)
			sawProgress := false
			var last mirror.SourceStatus
			p.waitFor("the source's error", waitLong, func() bool {
				list := sourcesOf(p)
				if len(list) != 1 {
					return false
				}
				last = list[0]
				sawProgress = sawProgress || !last.InProgressSince.IsZero()
				return strings.Contains(last.Error, tt.want)
			})
			if tt.inProgress && !sawProgress {
				t.Errorf("/v1/sources never showed the poll in progress")
			}
			_, body := p.get("/v1/sources")
			if strings.Contains(body+p.log(), "s3cretPassw0rd") || strings.Contains(body+p.log(), s.Token) {
				t.Errorf("a secret leaked: /v1/sources %s\nlog %s", body, p.log())
			}
			if ents, _ := os.ReadDir(st.drop); len(ents) != 0 {
				var names []string
				for _, e := range ents {
					names = append(names, e.Name())
				}
				t.Errorf("the drop dir holds %v", names)
			}
			if code := p.stop(); code != 0 {
				t.Errorf("daemon exit %d", code)
			}
			rss := memtest.PeakRSS(p.cmd.ProcessState)
			t.Logf("%s: %q; daemon peak RSS %d MiB", tt.name, last.Error, rss>>20)
			if rss > peakRSSBound {
				t.Errorf("daemon peak RSS %d MiB, bound %d MiB", rss>>20, peakRSSBound>>20)
			}
		})
	}
}

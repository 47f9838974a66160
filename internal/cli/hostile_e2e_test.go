package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
)

// Attack 1 of issue #18, against the real daemon running as its own uid:
// a trainer, another uid in the drop dir's group, turns the old default
// state_dir (<drop_dir>/.adapterd) into a link to the drop dir itself, and
// plants there a state.json claiming a model adapterd never made (for a
// folder that is gone) and a tmp link to a folder of the daemon's. The
// daemon must neither delete that model nor empty that folder.
const (
	daemonUID  = 61001
	hostileGID = 61000
	trainerUID = 61002
)

func TestAttack1ForgedStateInTheDropDirIsNeverRead(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("acting as two uids needs root (CI runs the tests as root)")
	}
	s := bed(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	const victim = "victim-model:latest"
	if err := s.Client.Copy(ctx, &api.CopyRequest{Source: baseModel, Destination: victim}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Client.Delete(context.Background(), &api.DeleteRequest{Model: victim}) })
	digest := modelDigest(t, s, victim)
	if digest == "" {
		t.Fatal("the victim model is not listed")
	}

	root, err := os.MkdirTemp("", "adapterd-attack1-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	os.Chmod(root, 0o755)
	drop, state, precious := filepath.Join(root, "drop"), filepath.Join(root, "state"), filepath.Join(root, "precious")
	mkOwned(t, drop, 0o2775, daemonUID, hostileGID)
	mkOwned(t, state, 0o750, daemonUID, hostileGID)
	mkOwned(t, precious, 0o755, daemonUID, hostileGID)
	if err := os.WriteFile(filepath.Join(precious, "keep"), []byte("the daemon's"), 0o644); err != nil {
		t.Fatal(err)
	}
	forged := fmt.Sprintf(`{"version": 1, "models": {%q: {"name": %q, "key": "gone", "ollama_digest": %q, "input_digest": "sha256:0", "strategy": "native", "created": "2026-01-01T00:00:00Z"}}, "files": {}}`, victim, victim, digest)
	src := filepath.Join(root, "forged.json")
	os.WriteFile(src, []byte(forged), 0o644)
	asUID(t, trainerUID, drop, "ln -s . .adapterd && ln -s "+precious+" tmp && cp "+src+" state.json")

	bin := copyBinary(t, root)
	st := &setup{root: root, drop: drop, state: state, config: filepath.Join(root, "adapterd.yaml"), listen: freePort(t), host: s.URL.String()}
	// No state_dir: the default, which systemd's StateDirectory= gives.
	cfg := fmt.Sprintf("drop_dir: %q\nsettle: 300ms\nresync: 1h\nlisten: %q\nollama: {host: %q}\non_remove: delete\nremove_grace: 0s\ndefaults: {base: %s}\n",
		drop, st.listen, st.host, baseModel)
	if err := os.WriteFile(st.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startAsUID(t, st, bin, daemonUID, "STATE_DIRECTORY="+state)
	p.waitFor("/readyz", waitLong, func() bool { code, _ := p.get("/readyz"); return code == 200 })
	// A resync after the first full sync: a second look at every key,
	// where the old daemon deleted the victim.
	time.Sleep(2 * time.Second)
	if code := p.stop(); code != 0 {
		t.Errorf("exit %d", code)
	}
	if _, err := s.Client.Show(ctx, &api.ShowRequest{Model: victim}); err != nil {
		t.Errorf("the model adapterd never made is gone: %v", err)
	}
	if _, err := os.Stat(filepath.Join(precious, "keep")); err != nil {
		t.Errorf("the daemon's folder behind the tmp link was emptied: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(state, "state.json")); strings.Contains(string(b), "victim") {
		t.Errorf("the forged records reached the state: %s", b)
	}
	if !strings.Contains(p.log(), "not migrated") {
		t.Errorf("the log does not say the old state was left alone:\n%s", p.log())
	}
}

// A state_dir in the drop dir is refused, by path and by identity (a link
// elsewhere that leads into it).
func TestAttack1StateDirInsideTheDropDirIsRefused(t *testing.T) {
	root := t.TempDir()
	drop := filepath.Join(root, "drop")
	os.Mkdir(drop, 0o755)
	os.Symlink(drop, filepath.Join(root, "alias"))
	for _, tc := range []struct{ state, want string }{
		{filepath.Join(drop, ".adapterd"), "inside drop_dir"},
		{filepath.Join(root, "alias"), "is drop_dir " + drop + " itself"},
		{filepath.Join(root, "alias", "state"), "is inside drop_dir"},
	} {
		cfg := filepath.Join(root, "c.yaml")
		os.WriteFile(cfg, []byte(fmt.Sprintf("drop_dir: %q\nstate_dir: %q\nlisten: \"\"\nollama: {host: 'http://127.0.0.1:1'}\n", drop, tc.state)), 0o644)
		_, stderr, code := runCLI(t, nil, "run", "--once", "--config", cfg)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("state_dir %s: exit %d, stderr %q; want it refused with %q", tc.state, code, stderr, tc.want)
		}
	}
	for _, name := range []string{".adapterd", "state"} {
		if _, err := os.Lstat(filepath.Join(drop, name)); err == nil {
			t.Errorf("a refused state_dir was created: %s", name)
		}
	}
}

// Attack 6 seen by the operator: a drop dir others can write without the
// sticky bit is named in the log and on /readyz.
func TestAttack6DropDirWithoutStickyBitIsReported(t *testing.T) {
	s := bed(t)
	st := newSetup(t, s.URL.String())
	os.Chmod(st.drop, 0o775|os.ModeSetgid)
	p := startDaemon(t, st)
	p.waitFor("/readyz", waitLong, func() bool { code, _ := p.get("/readyz"); return code == 200 })
	if _, body := p.get("/readyz"); !strings.Contains(body, "without the sticky bit") {
		t.Errorf("/readyz: %q", body)
	}
	if !strings.Contains(p.log(), "drop_dir lets group members replace each other's folders") {
		t.Errorf("log:\n%s", p.log())
	}
	os.Chmod(st.drop, 0o775|os.ModeSetgid|os.ModeSticky)
	if _, body := p.get("/readyz"); strings.Contains(body, "sticky") {
		t.Errorf("/readyz after chmod +t: %q", body)
	}
}

func mkOwned(t *testing.T, dir string, mode os.FileMode, uid, gid int) {
	t.Helper()
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
}

// asUID runs a shell command in dir as uid, in the shared group.
func asUID(t *testing.T, uid int, dir, script string) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: hostileGID}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("as uid %d: %s: %v\n%s", uid, script, err, out)
	}
}

// copyBinary puts the adapterd binary where every uid may run it.
func copyBinary(t *testing.T, dir string) string {
	t.Helper()
	src, err := os.Open(adapterdBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst := filepath.Join(dir, "adapterd")
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, src); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return dst
}

// startAsUID is startDaemon with the daemon running as uid in the shared
// group, as the packaged service runs as user adapterd.
func startAsUID(t *testing.T, st *setup, bin string, uid int, env ...string) *proc {
	t.Helper()
	logFile, err := os.CreateTemp(st.root, "stderr-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: hostileGID}
	return startProcAs(t, st, bin, []string{"run", "--config", st.config}, logFile, cred, cleanEnv(append(env, "HOME=/nonexistent")...))
}

//go:build linux

package dropdir_test

// The attacks of issue #18, each done the way a hostile trainer would: a
// second real uid (the tests run as root in CI; the trainer is this test
// binary, copied where that uid can run it, started with
// SysProcAttr.Credential) works on a drop dir shared through a group, while
// adapterd's own code runs here. Races run concurrently and many times; each
// test logs how often the trainer got its move in, and fails if the attack
// ever worked.

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The uids and the group of the shared drop dir. They need no passwd
// entries: the kernel only compares numbers.
const (
	sharedGID  = 61000
	trainerUID = 61002
	victimUID  = 61003
)

func TestMain(m *testing.M) {
	if act := os.Getenv("ADAPTERD_TRAINER"); act != "" {
		os.Exit(trainerMain(act, os.Args[len(os.Args)-1]))
	}
	os.Exit(m.Run())
}

// needRoot skips where the test cannot become another uid.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("acting as a second uid needs root (CI runs the tests as root)")
	}
}

// sharedRoot is a folder every uid can enter, for the test's drop dir and
// the trainer's binary.
func sharedRoot(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "adapterd-hostile-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// sharedDropDir makes a drop dir owned by root (adapterd here) and the
// shared group, with mode (2775 as packaged before #18, or 3775).
func sharedDropDir(t *testing.T, root string, mode os.FileMode) string {
	t.Helper()
	d := filepath.Join(root, "drop")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(d, 0, sharedGID); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, mode); err != nil {
		t.Fatal(err)
	}
	return d
}

// secretDir is a folder only root (adapterd) can read, holding files.
func secretDir(t *testing.T, root string, files map[string][]byte) string {
	t.Helper()
	d := filepath.Join(root, "secret")
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(d, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

var (
	selfOnce sync.Once
	selfPath string
	selfErr  error
)

// trainerBinary is this test binary, copied where the trainer's uid may
// run it (the go tool keeps it in a folder only root can enter).
func trainerBinary(t *testing.T) string {
	t.Helper()
	selfOnce.Do(func() {
		dir, err := os.MkdirTemp("", "adapterd-trainer-")
		if err != nil {
			selfErr = err
			return
		}
		os.Chmod(dir, 0o755)
		src, err := os.Open(os.Args[0])
		if err != nil {
			selfErr = err
			return
		}
		defer src.Close()
		selfPath = filepath.Join(dir, "trainer")
		dst, err := os.OpenFile(selfPath, os.O_CREATE|os.O_WRONLY, 0o755)
		if err != nil {
			selfErr = err
			return
		}
		_, selfErr = io.Copy(dst, src)
		dst.Close()
	})
	if selfErr != nil {
		t.Fatal(selfErr)
	}
	return selfPath
}

// trainer is the hostile user's process.
type trainer struct {
	cmd  *exec.Cmd
	stop string // the trainer stops once this file exists
	out  string // what it reports
	done chan error
}

// startTrainer runs action as uid in the shared group, with arg (a
// folder). The action runs until stop is called.
func startTrainer(t *testing.T, uid int, action, arg string) *trainer {
	t.Helper()
	ctl, err := os.MkdirTemp("", "adapterd-trainer-ctl-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(ctl) })
	os.Chmod(ctl, 0o777)
	tr := &trainer{stop: filepath.Join(ctl, "stop"), out: filepath.Join(ctl, "out"), done: make(chan error, 1)}
	tr.cmd = exec.Command(trainerBinary(t), "-test.run=^$", arg)
	tr.cmd.Env = []string{"ADAPTERD_TRAINER=" + action, "TRAINER_STOP=" + tr.stop, "TRAINER_OUT=" + tr.out}
	tr.cmd.Stderr = os.Stderr
	tr.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: sharedGID}}
	if err := tr.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { tr.done <- tr.cmd.Wait() }()
	t.Cleanup(func() { tr.finish(t) })
	return tr
}

// finish stops the trainer and returns what it reported.
func (tr *trainer) finish(t *testing.T) string {
	if tr.cmd == nil {
		b, _ := os.ReadFile(tr.out)
		return string(b)
	}
	os.WriteFile(tr.stop, nil, 0o644)
	select {
	case err := <-tr.done:
		if err != nil {
			t.Errorf("trainer: %v", err)
		}
	case <-time.After(30 * time.Second):
		tr.cmd.Process.Kill()
		<-tr.done
		t.Error("trainer did not stop")
	}
	tr.cmd = nil
	b, _ := os.ReadFile(tr.out)
	return string(b)
}

// runTrainer runs a one-shot action as uid and returns its report.
func runTrainer(t *testing.T, uid int, action, arg string) string {
	t.Helper()
	tr := startTrainer(t, uid, action, arg)
	select {
	case err := <-tr.done:
		tr.cmd = nil
		if err != nil {
			t.Fatalf("trainer %s: %v", action, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("trainer %s did not finish", action)
	}
	b, _ := os.ReadFile(tr.out)
	return string(b)
}

// trainerMain is the hostile user's side, in the copied test binary.
func trainerMain(action, arg string) int {
	stop, out := os.Getenv("TRAINER_STOP"), os.Getenv("TRAINER_OUT")
	stopped := func() bool { _, err := os.Stat(stop); return err == nil }
	report := func(s string) { os.WriteFile(out, []byte(s), 0o644) }
	switch action {
	case "swap-staging":
		// arg is "drop|target": every dot-folder adapterd stages in drop
		// is moved away and replaced by a link to target, as soon as it
		// appears.
		drop, target, _ := strings.Cut(arg, "|")
		swaps := 0
		for !stopped() {
			ents, _ := os.ReadDir(drop)
			for _, e := range ents {
				n := e.Name()
				if !strings.HasPrefix(n, ".") || !strings.Contains(n, "partial-") || e.Type()&os.ModeSymlink != 0 {
					continue
				}
				aside := filepath.Join(drop, ".stolen-"+strconv.Itoa(swaps))
				if os.Rename(filepath.Join(drop, n), aside) != nil {
					continue
				}
				if os.Symlink(target, filepath.Join(drop, n)) == nil {
					swaps++
				}
			}
		}
		report(strconv.Itoa(swaps))
	case "flip":
		// arg is "drop|key|target": drop/key flips between the trainer's
		// own folder and a link to target, one atomic exchange at a time.
		parts := strings.Split(arg, "|")
		drop, key, target := parts[0], parts[1], parts[2]
		link := filepath.Join(drop, "."+key+".link")
		if err := os.Symlink(target, link); err != nil {
			report(err.Error())
			return 1
		}
		flips := 0
		for !stopped() {
			if unix.Renameat2(unix.AT_FDCWD, link, unix.AT_FDCWD, filepath.Join(drop, key), unix.RENAME_EXCHANGE) == nil {
				flips++
			}
		}
		report(strconv.Itoa(flips))
	case "replace-with-link":
		// arg is "drop|key|target": the folder at key (someone else's)
		// is moved away and a link to target put in its place.
		parts := strings.Split(arg, "|")
		drop, key, target := parts[0], parts[1], parts[2]
		if err := os.Rename(filepath.Join(drop, key), filepath.Join(drop, "."+key+".moved")); err != nil {
			report("rename: " + err.Error())
			return 0
		}
		if err := os.Symlink(target, filepath.Join(drop, key)); err != nil {
			report("symlink: " + err.Error())
			return 0
		}
		report("replaced")
	case "mkfifo":
		if err := unix.Mkfifo(arg, 0o644); err != nil {
			report(err.Error())
			return 1
		}
		report("fifo")
	case "write-folder":
		// arg is "dir|src": a folder of the trainer's own, holding a copy
		// of every file in src (made readable by the test), if any.
		dst, src, _ := strings.Cut(arg, "|")
		if err := os.Mkdir(dst, 0o755); err != nil {
			report(err.Error())
			return 1
		}
		ents, _ := os.ReadDir(src)
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(src, e.Name()))
			if err == nil {
				err = os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644)
			}
			if err != nil {
				report(err.Error())
				return 1
			}
		}
		report("written")
	default:
		report("unknown action " + action)
		return 1
	}
	return 0
}

// logTries says how often a race ran and how often the trainer's move
// landed, for the log.
func logTries(t *testing.T, what string, tries int, won string) {
	t.Helper()
	t.Logf("%s: %d tries; the trainer got its move in %s times; the attack never worked", what, tries, won)
}

// readable is a folder every uid can read, holding files: what the
// trainer copies into a folder of its own.
func readable(t *testing.T, files map[string][]byte) string {
	t.Helper()
	d, err := os.MkdirTemp("", "adapterd-trainer-src-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	os.Chmod(d, 0o755)
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(d, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

var errNever = errors.New("never")

// withTimeout runs fn and fails the test if it takes longer than d: the
// attacks that block must not block.
func withTimeout(t *testing.T, d time.Duration, what string, fn func(ctx context.Context) error) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	select {
	case err := <-done:
		return err
	case <-time.After(d + 5*time.Second):
		t.Fatalf("%s blocked for more than %s", what, d)
		return errNever
	}
}

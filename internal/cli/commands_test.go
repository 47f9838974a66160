package cli

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
)

// runInProcess runs adapterd with args through Main, as the binary would.
func runInProcess(args ...string) (stdout, stderr string, code int) {
	var out, errb bytes.Buffer
	code = Main(context.Background(), args, Env{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }})
	return out.String(), errb.String(), code
}

// TestUsageListsEveryCommand: `adapterd help`, -h, --help, no command and
// an unknown command all print the usage made from the command table, and
// it has a line for every command and names every alias.
func TestUsageListsEveryCommand(t *testing.T) {
	for _, c := range []struct {
		args     []string
		code     int
		onStdout bool
	}{
		{[]string{"help"}, 0, true},
		{[]string{"-h"}, 0, true},
		{[]string{"--help"}, 0, true},
		{nil, 2, false},
		{[]string{"no-such-command"}, 2, false},
	} {
		stdout, stderr, code := runInProcess(c.args...)
		if code != c.code {
			t.Errorf("adapterd %v: exit %d, want %d", c.args, code, c.code)
		}
		usage := stderr
		if c.onStdout {
			usage = stdout
		}
		if !strings.HasPrefix(usage, "usage: adapterd <command>") && !strings.Contains(usage, "\nusage: adapterd <command>") {
			t.Errorf("adapterd %v: no usage in %q", c.args, usage)
			continue
		}
		for _, cmd := range commands {
			line := regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(cmd.name) + `( |$)`)
			if !line.MatchString(usage) {
				t.Errorf("adapterd %v: the usage has no line for %s:\n%s", c.args, cmd.name, usage)
			}
			for _, a := range cmd.aliases {
				if !strings.Contains(usage, a) {
					t.Errorf("adapterd %v: the usage does not name %s's alias %s", c.args, cmd.name, a)
				}
			}
			if !strings.Contains(usage, cmd.summary) {
				t.Errorf("adapterd %v: the usage lacks %s's summary %q", c.args, cmd.name, cmd.summary)
			}
		}
	}
}

// TestEveryCommandHelpListsItsFlags: `adapterd CMD -h` exits 0, runs
// nothing, and shows the command's usage line and every flag it declares,
// --config included where it has one.
func TestEveryCommandHelpListsItsFlags(t *testing.T) {
	withConfig := 0
	for _, c := range Commands() {
		t.Run(c.Name, func(t *testing.T) {
			_, stderr, code := runInProcess(c.Name, "-h")
			if code != 0 {
				t.Fatalf("adapterd %s -h: exit %d, stderr %q", c.Name, code, stderr)
			}
			if !strings.HasPrefix(stderr, "usage: adapterd "+c.Name) {
				t.Errorf("adapterd %s -h does not start with its usage line:\n%s", c.Name, stderr)
			}
			for _, f := range c.Flags {
				if !regexp.MustCompile(`(?m)^  -` + regexp.QuoteMeta(f) + `\b`).MatchString(stderr) {
					t.Errorf("adapterd %s -h does not list -%s:\n%s", c.Name, f, stderr)
				}
			}
		})
		for _, f := range c.Flags {
			if f == "config" {
				withConfig++
			}
		}
	}
	// run, check, modelfile, create, publish, status, confirm-removals,
	// rollback, unpin and the five service commands read a config.
	if withConfig != 14 {
		t.Errorf("%d commands take --config, want 14", withConfig)
	}
}

package release

import (
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// TestManPageNamesEveryCommand compares the packaged man page with what the
// built binary's help lists, so a new command cannot ship undocumented
// in man adapterd.
func TestManPageNamesEveryCommand(t *testing.T) {
	a := artefacts(t)
	bin := artefact(t, a, "adapterd-"+a.Stamp.Version+"-linux-"+runtime.GOARCH)
	help := run(t, bin, "help")
	_, list, ok := strings.Cut(help, "commands:\n")
	if !ok {
		t.Fatalf("adapterd help has no commands: section:\n%s", help)
	}
	man, err := os.ReadFile(filepath.Join(repoRoot, "packaging/man/adapterd.1"))
	if err != nil {
		t.Fatal(err)
	}
	// Command words start a usage line: "  run [--config F]", "  install | uninstall ...".
	line := regexp.MustCompile(`(?m)^  ([a-z][a-z-]*(?: \| [a-z][a-z-]*)*)`)
	n := 0
	for _, m := range line.FindAllStringSubmatch(list, -1) {
		for _, cmd := range strings.Split(m[1], " | ") {
			n++
			roff := strings.ReplaceAll(cmd, "-", `\-`)
			if !regexp.MustCompile(`(?m)^\.B[R]? .*\b` + regexp.QuoteMeta(roff)).Match(man) {
				t.Errorf("adapterd help lists %q; packaging/man/adapterd.1 has no .B line for it", cmd)
			}
		}
	}
	if n < 5 {
		t.Fatalf("found %d commands in adapterd help; the test would prove nothing:\n%s", n, help)
	}
}

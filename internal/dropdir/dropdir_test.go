package dropdir_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adapterd/adapterd/internal/dropdir"
	"github.com/adapterd/adapterd/internal/safefile"
)

func mustOpen(t *testing.T, path string) *dropdir.Dir {
	t.Helper()
	d, err := dropdir.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestOpenRefusesADropDirThatIsALink(t *testing.T) {
	root := t.TempDir()
	os.Mkdir(filepath.Join(root, "real"), 0o755)
	os.Symlink("real", filepath.Join(root, "drop"))
	if _, err := dropdir.Open(filepath.Join(root, "drop")); err == nil || !strings.Contains(err.Error(), "is a symlink") {
		t.Errorf("err = %v, want the link refused", err)
	}
}

// A key's folder is opened only when it is a real folder; a link, a file
// and a name the rule refuses are not.
func TestOpenFolderNeverFollowsALink(t *testing.T) {
	root := t.TempDir()
	drop := filepath.Join(root, "drop")
	os.Mkdir(drop, 0o755)
	os.Mkdir(filepath.Join(drop, "real"), 0o755)
	os.Symlink(root, filepath.Join(drop, "link"))
	os.WriteFile(filepath.Join(drop, "file"), nil, 0o644)
	d := mustOpen(t, drop)
	tests := []struct {
		key string
		ok  bool
	}{
		{"real", true},
		{"link", false},
		{"file", false},
		{".hidden", false},
		{"a\nb", false},
		{"..", false},
	}
	for _, tc := range tests {
		f, err := d.OpenFolder(tc.key)
		if (err == nil) != tc.ok {
			t.Errorf("OpenFolder(%q): err %v, want ok=%v", tc.key, err, tc.ok)
		}
		if f != nil {
			f.Close()
		}
	}
}

// The one snapshot is lstat's: a link is seen as a link, a hard link by its
// count, and a replaced file by its inode.
func TestEntryIsWhatLstatSees(t *testing.T) {
	drop := t.TempDir()
	os.WriteFile(filepath.Join(drop, "a"), []byte("xy"), 0o644)
	os.Link(filepath.Join(drop, "a"), filepath.Join(drop, "b"))
	os.Symlink("a", filepath.Join(drop, "c"))
	d := mustOpen(t, drop)
	list, err := d.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 || list[0].Name != "a" || list[0].Nlink != 2 || list[0].Size != 2 || !list[0].IsRegular() || !list[2].IsSymlink() {
		t.Errorf("List = %+v", list)
	}
	before := list[0].Ino
	os.Remove(filepath.Join(drop, "a"))
	os.WriteFile(filepath.Join(drop, "a"), []byte("xy"), 0o644)
	if e, _ := d.Lstat("a"); e.Ino == before {
		t.Error("a replaced file kept its inode in the snapshot")
	}
}

// Publish puts a staged folder in place in one rename, replaces an older
// version by exchange, and leaves nothing behind.
func TestStagePublishReplacesInOneStep(t *testing.T) {
	drop := t.TempDir()
	d := mustOpen(t, drop)
	for i, content := range []string{"v1", "v2"} {
		s, err := d.Stage("bot.partial-")
		if err != nil {
			t.Fatal(err)
		}
		if err := safefile.WriteAtomicData(s.F, "f", []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := s.Publish("bot", i > 0); err != nil {
			t.Fatal(err)
		}
		s.Close()
		if b, _ := os.ReadFile(filepath.Join(drop, "bot", "f")); string(b) != content {
			t.Errorf("after publish %d: %q", i, b)
		}
	}
	if ents, _ := os.ReadDir(drop); len(ents) != 1 {
		t.Errorf("left behind: %v", ents)
	}
}

// A new key is never published over a folder someone made meanwhile.
func TestPublishNeverReplacesAFolderThatAppeared(t *testing.T) {
	drop := t.TempDir()
	d := mustOpen(t, drop)
	s, err := d.Stage("bot.partial-")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	os.Mkdir(filepath.Join(drop, "bot"), 0o755)
	os.WriteFile(filepath.Join(drop, "bot", "theirs"), nil, 0o644)
	if err := s.Publish("bot", false); err == nil {
		t.Fatal("published over someone's folder")
	}
	if _, err := os.Stat(filepath.Join(drop, "bot", "theirs")); err != nil {
		t.Error("their folder was touched")
	}
}

// RemoveAll removes a folder's links, never what they point at.
func TestRemoveAllNeverFollowsALink(t *testing.T) {
	root := t.TempDir()
	drop, outside := filepath.Join(root, "drop"), filepath.Join(root, "outside")
	os.MkdirAll(filepath.Join(drop, "bot", "sub"), 0o755)
	os.Mkdir(outside, 0o755)
	os.WriteFile(filepath.Join(outside, "keep"), nil, 0o644)
	os.Symlink(outside, filepath.Join(drop, "bot", "link"))
	os.Symlink(outside, filepath.Join(drop, "bot", "sub", "link"))
	d := mustOpen(t, drop)
	if err := d.RemoveAll("bot", "test-"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
		t.Error("a file behind a link was removed")
	}
	if ents, _ := os.ReadDir(drop); len(ents) != 0 {
		t.Errorf("left behind: %v", ents)
	}
}

// The state dir is refused in the drop dir by identity: through a link, or
// not created yet below one.
func TestCheckStateDirComparesDirectoriesNotPaths(t *testing.T) {
	root := t.TempDir()
	drop := filepath.Join(root, "drop")
	os.Mkdir(drop, 0o755)
	os.Symlink(drop, filepath.Join(root, "alias"))
	tests := []struct {
		state string
		ok    bool
	}{
		{filepath.Join(root, "state"), true},
		{drop, false},
		{filepath.Join(root, "alias"), false},
		{filepath.Join(root, "alias", "x", "y"), false},
		{filepath.Join(drop, ".adapterd"), false},
	}
	for _, tc := range tests {
		if err := dropdir.CheckStateDir(drop, tc.state); (err == nil) != tc.ok {
			t.Errorf("CheckStateDir(%s): %v, want ok=%v", tc.state, err, tc.ok)
		}
	}
}

// The old <drop>/.adapterd is migrated once when it passes the checks,
// and left alone when it is a link.
func TestMigrateStateOnceAndOnlyWhenItIsAdapterds(t *testing.T) {
	root := t.TempDir()
	drop, state := filepath.Join(root, "drop"), filepath.Join(root, "state")
	os.MkdirAll(filepath.Join(drop, ".adapterd"), 0o700)
	os.Mkdir(state, 0o700)
	os.WriteFile(filepath.Join(drop, ".adapterd", "state.json"), []byte(`{"version":1}`), 0o600)
	os.WriteFile(filepath.Join(drop, ".adapterd", "hubsource-1.json"), []byte(`{}`), 0o600)
	migrated, err := dropdir.MigrateState(drop, state)
	if err != nil || !migrated {
		t.Fatalf("migrated %v, err %v", migrated, err)
	}
	if b, _ := os.ReadFile(filepath.Join(state, "hubsource-1.json")); string(b) != "{}" {
		t.Error("the source record was not migrated")
	}
	if _, err := os.Stat(filepath.Join(drop, ".adapterd.migrated")); err != nil {
		t.Error("the old folder was not set aside")
	}
	if migrated, err := dropdir.MigrateState(drop, state); migrated || err != nil {
		t.Errorf("second migration: %v, %v", migrated, err)
	}

	state2 := filepath.Join(root, "state2")
	os.Mkdir(state2, 0o700)
	os.Symlink(".", filepath.Join(drop, ".adapterd"))
	if migrated, err := dropdir.MigrateState(drop, state2); migrated || err == nil || !strings.Contains(err.Error(), "not a folder") {
		t.Errorf("a link as .adapterd: migrated %v, err %v", migrated, err)
	}
}

// Whatever happens to the staging folder's name in the drop dir, what is
// published is the folder adapterd wrote: it lives inside a private folder
// nobody else can change.
func TestPublishIsTheFolderWrittenEvenIfItsNameIsSwapped(t *testing.T) {
	root := t.TempDir()
	drop, elsewhere := filepath.Join(root, "drop"), filepath.Join(root, "elsewhere")
	os.Mkdir(drop, 0o755)
	os.Mkdir(elsewhere, 0o755)
	d := mustOpen(t, drop)
	s, err := d.Stage("bot.partial-")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The name is moved away and a link planted in its place.
	os.Rename(s.Path(), filepath.Join(drop, ".stolen"))
	os.Symlink(elsewhere, s.Path())
	if err := safefile.WriteAtomicData(s.F, "f", []byte("ours"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Publish("bot", false); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(filepath.Join(drop, "bot")); err != nil || !fi.IsDir() {
		t.Fatalf("bot is not a real folder: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(drop, "bot", "f")); string(b) != "ours" {
		t.Errorf("published %q", b)
	}
	if ents, _ := os.ReadDir(elsewhere); len(ents) != 0 {
		t.Errorf("written through the link: %v", ents)
	}
}

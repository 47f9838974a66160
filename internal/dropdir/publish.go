package dropdir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"

	"github.com/adapterd/adapterd/internal/safefile"
)

// Staging is a folder adapterd builds in the drop dir, hidden from the
// watcher and the reconciler, and then publishes under a key in one rename.
//
// The folder is not named in the drop dir itself, where anyone who can
// write the drop dir could rename it away and plant a link between any two
// steps. It lives one level down, as "d" inside a private folder
// .<prefix><random> that adapterd makes with mode 0700: nobody else can
// rename or replace anything inside it. adapterd holds both open, writes
// only through the folder's handle (F), and renames "d" relative to the
// private folder's handle, so what it publishes is exactly the folder it
// wrote, whatever happens to the private folder's own name meanwhile.
type Staging struct {
	d    *Dir
	Name string   // the private folder's dot-name in the drop dir
	F    *os.File // the folder's handle; write through it only
	priv *os.File // the private folder, holding the folder as "d"
	id   ID       // F's identity
	pid  ID       // priv's identity
}

// stagedName is the staging folder's name inside the private folder.
const stagedName = "d"

// Stage makes a new staging folder under .<prefix><random> in the drop dir.
func (d *Dir) Stage(prefix string) (*Staging, error) {
	for range 100 {
		name := "." + prefix + randomSuffix()
		err := unix.Mkdirat(int(d.f.Fd()), name, 0o700)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "mkdir", Path: d.Join(name), Err: err}
		}
		priv, err := safefile.OpenDirAt(d.f, name)
		if err != nil {
			return nil, err
		}
		s := &Staging{d: d, Name: name, priv: priv}
		if err := s.init(); err != nil {
			s.Close()
			return nil, err
		}
		return s, nil
	}
	return nil, fmt.Errorf("%s: cannot make a staging folder .%s*", d.path, prefix)
}

// init checks that the private folder is the one adapterd made (mode 0700,
// adapterd's) and makes the staging folder in it.
func (s *Staging) init() error {
	pe, err := Stat(s.priv)
	if err != nil {
		return err
	}
	if pe.Mode&0o077 != 0 || !ownedByMe(s.priv) {
		return fmt.Errorf("%s was replaced as soon as adapterd made it; nothing is staged: make the drop dir sticky (chmod +t)", s.Path())
	}
	s.pid = pe.ID()
	if err := unix.Mkdirat(int(s.priv.Fd()), stagedName, 0o755); err != nil {
		return &fs.PathError{Op: "mkdir", Path: s.Path() + "/" + stagedName, Err: err}
	}
	if s.F, err = safefile.OpenDirAt(s.priv, stagedName); err != nil {
		return err
	}
	e, err := Stat(s.F)
	if err != nil {
		return err
	}
	s.id = e.ID()
	// The mode a person's cp -r gives, whatever adapterd's umask.
	return s.F.Chmod(0o755)
}

// Path is the staging folder's path, for messages.
func (s *Staging) Path() string { return s.d.Join(s.Name) }

// Publish renames the staging folder to key in one step: a plain rename
// when key is new (never over a folder that appeared meanwhile), an
// exchange when it replaces an older version, so key never shows nothing
// or a mix. Where the file system cannot exchange two names, the old
// folder is set aside in the private folder first. Before the rename the
// staging folder's identity is checked once more.
func (s *Staging) Publish(key string, replace bool) error {
	if err := s.F.Sync(); err != nil {
		return err
	}
	if e, err := StatAt(s.priv, stagedName); err != nil || e.ID() != s.id {
		return fmt.Errorf("%s changed while adapterd filled it; nothing is published", s.Path())
	}
	pfd, dfd := int(s.priv.Fd()), int(s.d.f.Fd())
	var err error
	if !replace {
		err = renameNoReplace(pfd, stagedName, dfd, key)
	} else if err = exchange(pfd, stagedName, dfd, key); errors.Is(err, errNoExchange) {
		err = s.swapByTwoRenames(key)
	}
	if err != nil {
		return fmt.Errorf("publish %s: %w", s.d.Join(key), err)
	}
	s.d.f.Sync()
	return nil
}

// swapByTwoRenames is the exchange where renameat2 has no RENAME_EXCHANGE:
// the old folder goes into the private folder, the new one to key; on a
// failure the old one is put back.
func (s *Staging) swapByTwoRenames(key string) error {
	pfd, dfd := int(s.priv.Fd()), int(s.d.f.Fd())
	const old = "old"
	if err := renameNoReplace(dfd, key, pfd, old); err != nil {
		return err
	}
	if err := renameNoReplace(pfd, stagedName, dfd, key); err != nil {
		renameNoReplace(pfd, old, dfd, key)
		return err
	}
	return nil
}

// Close releases the handles and removes the private folder with what is
// left in it: nothing after a plain publish, the old version after an
// exchange, the partial folder after a failure. The private folder's own
// name is removed only while it still names that folder.
func (s *Staging) Close() error {
	if s.F != nil {
		s.F.Close()
	}
	entries, err := List(s.priv)
	if err == nil {
		for _, e := range entries {
			if err = removeAllAt(s.priv, e.Name); err != nil {
				break
			}
		}
	}
	s.priv.Close()
	if e, lerr := s.d.Lstat(s.Name); lerr == nil && e.ID() == s.pid {
		if rerr := unix.Unlinkat(int(s.d.f.Fd()), s.Name, unix.AT_REMOVEDIR); rerr != nil && err == nil {
			err = &fs.PathError{Op: "remove", Path: s.Path(), Err: rerr}
		}
	}
	return err
}

// ownedByMe reports whether f belongs to adapterd's user.
func ownedByMe(f *os.File) bool {
	var st unix.Stat_t
	return unix.Fstat(int(f.Fd()), &st) == nil && st.Uid == uint32(os.Geteuid())
}

// RemoveAll deletes name from the drop dir: a key is renamed aside to
// .<key>.<tag>removed-<random> first, so the watcher sees it go in one step
// rather than file by file; then it is emptied through handles without
// following any link. A dot-name is removed where it is.
func (d *Dir) RemoveAll(name, tag string) error {
	if _, err := d.Lstat(name); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	aside := name
	if name[0] != '.' {
		aside = "." + name + "." + tag + "removed-" + randomSuffix()
		if err := renameNoReplace(int(d.f.Fd()), name, int(d.f.Fd()), aside); err != nil {
			return fmt.Errorf("remove %s: %w", d.Join(name), err)
		}
	}
	return removeAllAt(d.f, aside)
}

// removeAllAt removes name below dir and everything in it, through
// handles: a link is removed, never followed.
func removeAllAt(dir *os.File, name string) error {
	err := unix.Unlinkat(int(dir.Fd()), name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return &fs.PathError{Op: "remove", Path: join(dir, name), Err: err}
	}
	sub, err := safefile.OpenDirAt(dir, name)
	if err != nil {
		return err
	}
	entries, err := List(sub)
	if err == nil {
		for _, e := range entries {
			if err = removeAllAt(sub, e.Name); err != nil {
				break
			}
		}
	}
	sub.Close()
	if err != nil {
		return err
	}
	if err := unix.Unlinkat(int(dir.Fd()), name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return &fs.PathError{Op: "remove", Path: join(dir, name), Err: err}
	}
	return nil
}

package dropdir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"

	"github.com/adapterd/adapterd/internal/safefile"
)

// Staging is a folder adapterd builds under a dot-name in the drop dir
// (ignored by the watcher and the reconciler) and then publishes under a
// key in one rename. It is made by adapterd with mode 0755, so nobody else
// can write into it, and it is written only through its handle: if someone
// renames the dot-name away and plants a link there, the writes still go
// into the folder adapterd made, and Publish refuses to rename the link.
type Staging struct {
	d    *Dir
	Name string   // the dot-name in the drop dir
	F    *os.File // the folder's handle; write through it only
	id   ID
}

// Stage makes a new folder named .<prefix><random> in the drop dir.
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
		f, err := safefile.OpenDirAt(d.f, name)
		if err != nil {
			return nil, err
		}
		e, err := Stat(f)
		if err != nil {
			f.Close()
			return nil, err
		}
		// 0700 until the handle is held, so nobody can put anything in
		// it first; then it reads like a folder a person copied in.
		if err := f.Chmod(0o755); err != nil {
			f.Close()
			return nil, err
		}
		return &Staging{d: d, Name: name, F: f, id: e.ID()}, nil
	}
	return nil, fmt.Errorf("%s: cannot make a staging folder .%s*", d.path, prefix)
}

// Path is the staging folder's path, for messages.
func (s *Staging) Path() string { return s.d.Join(s.Name) }

// intact reports whether the dot-name still names the folder adapterd
// made. Anything else (a link, another folder) means someone swapped it.
func (s *Staging) intact() error {
	e, err := s.d.Lstat(s.Name)
	if err == nil && e.IsDir() && e.ID() == s.id {
		return nil
	}
	return fmt.Errorf("%s was replaced while adapterd filled it (someone else writes the drop dir's dot-folders); nothing is published: make the drop dir sticky (chmod +t) so only a folder's owner can rename it", s.Path())
}

// Publish renames the staging folder to key in one step: a plain rename
// when key is new (never over a folder that appeared meanwhile), an
// exchange when it replaces an older version, so key never shows nothing
// or a mix. Where the file system cannot exchange two names, the old
// folder is set aside under a dot-name first. The staging folder's
// identity is checked before the rename, and what ends up at key after it.
func (s *Staging) Publish(key string, replace bool) error {
	if err := s.F.Sync(); err != nil {
		return err
	}
	if err := s.intact(); err != nil {
		return err
	}
	dfd := int(s.d.f.Fd())
	if !replace {
		if err := renameNoReplace(dfd, s.Name, key); err != nil {
			return fmt.Errorf("publish %s: %w", s.d.Join(key), err)
		}
	} else if err := exchange(dfd, s.Name, key); err != nil {
		if !errors.Is(err, errNoExchange) {
			return fmt.Errorf("publish %s: %w", s.d.Join(key), err)
		}
		if err := s.swapByTwoRenames(key); err != nil {
			return fmt.Errorf("publish %s: %w", s.d.Join(key), err)
		}
	}
	s.d.f.Sync()
	if e, err := s.d.Lstat(key); err != nil || e.ID() != s.id {
		// The rename raced a swap: what went to key is not ours. The
		// reconciler reads key as it reads any folder (a link is refused),
		// so this is only reported.
		return fmt.Errorf("%s was replaced while adapterd published it: make the drop dir sticky (chmod +t) so only a folder's owner can rename it", s.d.Join(key))
	}
	return nil
}

// swapByTwoRenames is the exchange where renameat2 has no RENAME_EXCHANGE:
// the old folder goes under a dot-name, the new one to key; on a failure
// the old one is put back.
func (s *Staging) swapByTwoRenames(key string) error {
	dfd := int(s.d.f.Fd())
	aside := s.Name + ".old"
	if err := renameNoReplace(dfd, key, aside); err != nil {
		return err
	}
	if err := renameNoReplace(dfd, s.Name, key); err != nil {
		unix.Renameat(dfd, aside, dfd, key)
		return err
	}
	// The old version now sits where the staging folder was, and Close
	// removes it.
	return unix.Renameat(dfd, aside, dfd, s.Name)
}

// Close releases the handle and removes what is left under the dot-name:
// nothing after a plain publish, the old version after an exchange, the
// partial folder after a failure.
func (s *Staging) Close() error {
	s.F.Close()
	return s.d.RemoveAll(s.Name, "")
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
		if err := renameNoReplace(int(d.f.Fd()), name, aside); err != nil {
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

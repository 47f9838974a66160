// Package packaging holds the files distributions ship with adapterd (the
// systemd unit, sysusers and tmpfiles entries, see README.md) and no Go
// code. Its tests check those files with systemd's own tools, because a
// unit with a typo still "works": systemd ignores unknown keys with only a
// log line nobody reads.
package packaging

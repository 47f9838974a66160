// Package packaging holds the files distributions ship with adapterd (the
// systemd unit, sysusers and tmpfiles entries, see README.md), and embeds
// the unit for `adapterd install`, which renders its unit from it. Its tests check those files with systemd's own tools, because a
// unit with a typo still "works": systemd ignores unknown keys with only a
// log line nobody reads.
package packaging

// Package release builds adapterd's release artefacts from a checkout:
// static binaries for each architecture, .deb and .rpm packages (nfpm),
// and an OCI image layout tarball (go-containerregistry), all stamped with
// one version taken from git.
//
// It lives in its own module (deploy/go.mod) so that nfpm, Helm and the
// Kubernetes API types, which only the release build and its tests need,
// stay out of the daemon's go.mod. The files it packages are the repo's
// own: packaging/ holds the unit, sysusers, tmpfiles, maintainer scripts
// and man page; config.example.yaml is the packaged config. Nothing here
// restates them.
package release

// Package mirror mirrors remote folders into the drop directory: the
// folders of an S3 prefix, and adapters on a Hugging Face Hub. A fleet of
// hosts can share one bucket or one hub organisation as the source of
// truth, and each host's adapterd does the rest with the pipeline it
// already has.
//
// The mirror only ever produces what a careful person would do by hand:
// each remote folder becomes <drop_dir>/<key>/, written in a dot-folder
// (which the watcher ignores) and renamed into place in one step.
// Everything after that, settle, ingest, remove_grace, on_remove and the
// ownership rules, is the drop directory's, unchanged. The mirror holds no
// model state of its own.
//
// One Mirror does the protocol-neutral part for every kind of source: the
// state file of the folders it owns, the swap into place, removal, the
// lost-drop-dir guard, status and metrics, and the poll's policy as a pure
// function (decide, in plan.go). A remote (s3.go, hub.go) only says what
// the source offers now and fetches one folder's files.
//
// Rules that follow from the folders being remote:
//
//   - A folder is mirrored only when it is complete. An S3 folder when its
//     ready_file object exists, if one is configured, or else when its
//     listing (names, sizes, ETags) was the same on two polls: a training
//     job that is still uploading is never seen half-written. A hub commit
//     is atomic, so it is mirrored at first sight.
//   - An answer is weak evidence for removal, as an empty mount point is
//     (see ingest's lost-mount guard). An answer that fails removes
//     nothing. An S3 listing that is empty when folders were mirrored from
//     it removes nothing and is reported. A hub repo is removed only when
//     the hub says it is not found on two polls in a row, to the endpoint
//     and token that fetched it: anything else is an outage. Only folders
//     this source created, recorded in its state file, are ever removed.
//   - Bytes are expensive: a file whose size and ETag (for the hub, its
//     sha256 or git blob sha1) match what was mirrored is copied from the
//     local folder, never downloaded again, and the state file keeps that
//     knowledge across restarts.
package mirror

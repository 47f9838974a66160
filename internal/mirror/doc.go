// Package s3source mirrors an S3 prefix into the drop directory, so that a
// fleet of hosts can share one bucket as the source of truth and each host's
// adapterd does the rest with the pipeline it already has.
//
// The mirror only ever produces what a careful person would do by hand:
// each immediate sub-prefix prefix/<key>/ becomes <drop_dir>/<key>/, written
// in a dot-folder (which the watcher ignores) and renamed into place in one
// step. Everything after that, settle, ingest, remove_grace, on_remove and
// the ownership rules, is the drop directory's, unchanged. The mirror holds
// no model state of its own.
//
// Three rules follow from the bucket being remote:
//
//   - A folder is mirrored only when it is complete: its ready_file object
//     exists, if one is configured, or else its listing (names, sizes,
//     ETags) was the same on two polls. A training job that is still
//     uploading is never seen half-written.
//   - A listing is weak evidence for removal, as an empty mount point is
//     (see ingest's lost-mount guard). A listing that fails removes
//     nothing; a listing that is empty when folders were mirrored from it
//     removes nothing and is reported. Only folders this source created,
//     recorded in its state file, are ever removed.
//   - Bytes are expensive: an object whose size and ETag match what was
//     mirrored is copied from the local folder, never downloaded again, and
//     the state file keeps that knowledge across restarts.
package mirror

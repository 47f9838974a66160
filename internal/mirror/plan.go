package mirror

// readiness says when a folder a source offers may be mirrored.
type readiness int

const (
	// whenStable: once two polls in a row saw the same version. An S3
	// prefix without ready_file: a training job may still be uploading.
	whenStable readiness = iota
	// readyNow: the source vouches for the folder being whole: its
	// ready_file object is there, or it is a hub commit, which is atomic.
	readyNow
	// notReady: the ready_file object is not there yet.
	notReady
)

// offer is one folder a source offers at a poll.
type offer struct {
	// Version changes whenever the folder's content would: for S3 the
	// files' names, sizes and ETags (filesVersion); for the hub the commit
	// and the entry's settings.
	Version string
	Ready   readiness
	// Files are the files to fetch when the source lists them (S3); nil
	// when the fetch finds them (hub).
	Files map[string]object
	// Commit is the hub commit, for status; "" for S3.
	Commit string
}

// failure is how a source's check failed.
type failure int

const (
	checked failure = iota // the check answered
	outage                 // no answer worth anything: network, 5xx, 401/403, timeouts
	gone                   // the source says the thing is deleted (the hub's RepoNotFound)
)

// policy is what a kind of source may conclude from an answer.
type policy struct {
	// holdEmpty: an answer with no folders, where folders were mirrored,
	// holds every removal. An S3 listing says little: an outage, a wrong
	// prefix or other credentials look the same as a bucket emptied on
	// purpose.
	holdEmpty bool
	// goneAfter is how many polls in a row must miss a folder before it is
	// removed (at least 1).
	goneAfter int
}

// observation is what one poll saw: the source, the previous poll, this
// source's records and the drop directory.
type observation struct {
	failed failure
	// sameAccess: the endpoint and credentials are those of the last
	// check that succeeded, so "gone" is not "hidden from these".
	sameAccess bool
	offers     map[string]offer  // key → the folder offered now
	last       map[string]string // key → version offered at the previous poll
	absent     map[string]int    // owned key → earlier polls in a row that did not offer it
	owned      map[string]string // folders this source made → version as mirrored
	local      map[string]bool   // key → a folder of that name is in drop_dir
	policy     policy
}

// plan is what a poll does about it. Every list is sorted.
type plan struct {
	outage  bool     // the check failed: nothing is mirrored or removed
	hold    int      // > 0: the answer is empty while this many folders are mirrored; do nothing else
	forget  []string // records of folders an operator removed by hand during a hold
	mirror  []string // complete folders that differ from what is in drop_dir
	remove  []string // folders this source made that it no longer offers
	pending []string // folders no longer offered, kept until more polls agree
	waiting []string // folders not complete yet
	clash   []string // folders in drop_dir this source did not make
}

// decide is the whole policy of a poll, with no I/O, so that each rule is
// one row in a table test.
func decide(o observation) plan {
	var p plan
	switch {
	case o.failed == outage:
		return plan{outage: true}
	case o.failed == gone && !o.sameAccess:
		// Not found under other credentials or another endpoint than
		// those that fetched the folders: hidden, not deleted.
		return plan{outage: true}
	case o.failed == gone:
		o.offers = nil
	}
	if len(o.offers) == 0 && len(o.owned) > 0 && o.policy.holdEmpty {
		// An empty listing where folders were mirrored is an outage, a
		// wrong prefix or credentials that see another bucket far more
		// often than a fleet retiring every adapter at once. Folders an
		// operator removed by hand are forgotten: that is how the last
		// ones of a bucket are retired on purpose.
		for _, key := range sortedKeys(o.owned) {
			if o.local[key] {
				p.hold++
			} else {
				p.forget = append(p.forget, key)
			}
		}
		if p.hold > 0 {
			return p
		}
	}
	for _, key := range sortedKeys(o.offers) {
		f := o.offers[key]
		version, owned := o.owned[key]
		switch {
		case owned && o.local[key] && version == f.Version:
			// mirrored and unchanged
		case !owned && o.local[key]:
			p.clash = append(p.clash, key)
		case !complete(f, o.last, key):
			p.waiting = append(p.waiting, key)
		default:
			p.mirror = append(p.mirror, key)
		}
	}
	for _, key := range sortedKeys(o.owned) {
		if _, ok := o.offers[key]; ok || contains(p.forget, key) {
			continue
		}
		if o.absent[key]+1 >= max(o.policy.goneAfter, 1) {
			p.remove = append(p.remove, key)
		} else {
			p.pending = append(p.pending, key)
		}
	}
	return p
}

// complete says whether a folder may be mirrored now.
func complete(f offer, last map[string]string, key string) bool {
	switch f.Ready {
	case readyNow:
		return true
	case notReady:
		return false
	}
	prev, seen := last[key]
	return seen && prev == f.Version
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

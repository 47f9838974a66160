package s3source

// observation is what one poll saw: the bucket, the previous poll, this
// source's records and the drop directory.
type observation struct {
	listing   map[string]map[string]object // key → relevant objects, now
	last      map[string]map[string]object // the same at the previous poll
	owned     map[string]map[string]object // folders this source made → files as mirrored
	local     map[string]bool              // key → a folder of that name is in drop_dir
	readyFile string
}

// plan is what a poll does about it. Every list is sorted.
type plan struct {
	hold    int      // > 0: the listing is empty while this many folders are mirrored; do nothing else
	forget  []string // records of folders an operator removed by hand during a hold
	mirror  []string // complete folders that differ from what is in drop_dir
	remove  []string // folders this source made whose prefix is gone
	waiting []string // folders not complete yet
	clash   []string // folders in drop_dir this source did not make
}

// decide is the whole policy of a poll, with no I/O, so that each rule is
// one row in a table test.
func decide(o observation) plan {
	var p plan
	if len(o.listing) == 0 && len(o.owned) > 0 {
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
	for _, key := range sortedKeys(o.listing) {
		want := o.listing[key]
		files, owned := o.owned[key]
		switch {
		case owned && o.local[key] && sameFiles(files, want):
			// mirrored and unchanged
		case !owned && o.local[key]:
			p.clash = append(p.clash, key)
		case !complete(want, o.last, key, o.readyFile):
			p.waiting = append(p.waiting, key)
		default:
			p.mirror = append(p.mirror, key)
		}
	}
	for _, key := range sortedKeys(o.owned) {
		if _, ok := o.listing[key]; !ok && !contains(p.forget, key) {
			p.remove = append(p.remove, key)
		}
	}
	return p
}

// complete says whether a folder may be mirrored now: its ready_file object
// is there, or, without a ready_file, it listed the same on two polls.
func complete(want map[string]object, last map[string]map[string]object, key, readyFile string) bool {
	if readyFile != "" {
		_, ok := want[readyFile]
		return ok
	}
	prev, seen := last[key]
	return seen && sameFiles(want, prev)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

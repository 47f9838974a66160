package httpapi

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/adapterd/adapterd/internal/mirror"
	"github.com/adapterd/adapterd/internal/status"
)

// WriteTable writes list as a table with the columns KEY MODEL STATE
// STRATEGY AGE ERROR. AGE is now minus Updated, in the largest whole unit.
// An ingest's progress follows its state: "ingesting merge 41% 120 MB/290
// MB".
func WriteTable(w io.Writer, list []status.Status, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tMODEL\tSTATE\tSTRATEGY\tAGE\tERROR")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n",
			cell(s.Key), cell(s.Model), cell(stateCell(s)), cell(s.Strategy),
			age(s.Updated, now), cell(s.Error))
	}
	return tw.Flush()
}

// WriteSourcesTable writes the sources' status as a table with the columns
// SOURCE KIND COMMIT CHECKED FOLDERS ERROR. CHECKED is the age of the last
// check that answered; a poll under way shows in ERROR as "in progress
// since T"; COMMIT is a hub revision's commit, shortened as git
// shows it.
func WriteSourcesTable(w io.Writer, list []mirror.SourceStatus, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tKIND\tCOMMIT\tCHECKED\tFOLDERS\tERROR")
	for _, s := range list {
		commit := s.Commit
		if len(commit) > 12 {
			commit = commit[:12]
		}
		errCell := s.Error
		if !s.InProgressSince.IsZero() {
			// A poll under way: how long it has run tells a slow source
			// from a stalled one before transfers.poll_timeout cuts it.
			errCell = "in progress since " + s.InProgressSince.Local().Format(time.DateTime) + " (" + age(s.InProgressSince, now) + ")"
			if s.Error != "" {
				errCell += "; last poll: " + s.Error
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n",
			cell(s.Source), cell(s.Kind), cell(commit), age(s.LastCheck, now), s.Folders, cell(errCell))
	}
	return tw.Flush()
}

// stateCell is the state, and for an ingest its step and how far it is.
func stateCell(s status.Status) string {
	p := s.Progress
	if s.Pinned != "" {
		return string(s.State) + " (pinned " + s.Pinned + ")"
	}
	if p == nil || p.Step == "" {
		return string(s.State)
	}
	out := string(s.State) + " " + p.Step
	if p.BytesTotal > 0 {
		pct := min(100, p.BytesDone*100/p.BytesTotal)
		out += fmt.Sprintf(" %d%% %s/%s", pct, megabytes(p.BytesDone), megabytes(p.BytesTotal))
	}
	return out
}

// megabytes shows n bytes in decimal megabytes, as disk sizes are written:
// whole from 10 MB on, one decimal below.
func megabytes(n int64) string {
	mb := float64(n) / 1e6
	if mb >= 10 {
		return fmt.Sprintf("%.0f MB", mb)
	}
	return fmt.Sprintf("%.1f MB", mb)
}

// cell makes a value safe for one tabwriter cell on a terminal. Keys are
// folder names and errors may quote file contents, so a tab, newline or
// escape sequence in them must not break the columns or drive the
// terminal.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
			return ' '
		case !unicode.IsPrint(r):
			return '?'
		}
		return r
	}, s)
}

// age renders now - updated as "5s", "3m", "2h" or "4d", truncated to the
// largest whole unit, or "-" when updated is unset. A time in the future,
// from clock skew, shows as "0s".
func age(updated, now time.Time) string {
	if updated.IsZero() {
		return "-"
	}
	d := max(now.Sub(updated), 0)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}

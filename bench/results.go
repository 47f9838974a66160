package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// row is one measured result, with the peer it is compared against.
type row struct {
	section string
	what    string
	value   string
	peer    string // what the value is compared with, measured in the same run
	peerVal string
	ratio   string
	target  string
	met     string // "yes", "NO", or ""
}

type results struct {
	meta  [][2]string
	rows  []row
	notes []string
}

func newResults() *results { return &results{} }

func (r *results) add(x row) {
	r.rows = append(r.rows, x)
	logf("result: [%s] %s = %s%s%s", x.section, x.what, x.value,
		map[bool]string{true: " | peer " + x.peer + " = " + x.peerVal, false: ""}[x.peer != ""],
		map[bool]string{true: " | ratio " + x.ratio, false: ""}[x.ratio != ""])
}

func (r *results) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

func (r *results) markdown() string {
	var b strings.Builder
	b.WriteString("## Results\n\n")
	for _, m := range r.meta {
		fmt.Fprintf(&b, "- **%s:** %s\n", m[0], m[1])
	}
	b.WriteString("\n")
	// Sections in the order they first appear; rows keep their order.
	var sections []string
	bySection := map[string][]row{}
	for _, x := range r.rows {
		if _, ok := bySection[x.section]; !ok {
			sections = append(sections, x.section)
		}
		bySection[x.section] = append(bySection[x.section], x)
	}
	slices.SortStableFunc(sections, func(a, b string) int { return strings.Compare(sectionNum(a), sectionNum(b)) })
	for _, section := range sections {
		fmt.Fprintf(&b, "\n### %s\n\n", section)
		b.WriteString("| measurement | adapterd | peer (same run) | peer value | ratio | target | met |\n")
		b.WriteString("|---|---|---|---|---|---|---|\n")
		for _, x := range bySection[section] {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n",
				cell(x.what), cell(x.value), cell(x.peer), cell(x.peerVal), cell(x.ratio), cell(x.target), cell(x.met))
		}
	}
	if len(r.notes) > 0 {
		b.WriteString("\n### Notes from this run\n\n")
		for _, n := range r.notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}

// sectionNum is a section's leading number ("1b."), for ordering.
func sectionNum(s string) string {
	n, _, _ := strings.Cut(s, " ")
	return n
}

func cell(s string) string {
	if s == "" {
		return "–"
	}
	return strings.ReplaceAll(s, "|", "\\|")
}

// median of durations; the runs are also listed by runsText.
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func medianF(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func secs(d time.Duration) string {
	switch {
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// medText is "median (run1, run2, …)" when there is more than one run.
func medText(ds []time.Duration) string {
	if len(ds) == 1 {
		return secs(ds[0])
	}
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = secs(d)
	}
	return fmt.Sprintf("%s (median of %s)", secs(median(ds)), strings.Join(parts, ", "))
}

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}

func ratioText(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "n/a"
	}
	return fmt.Sprintf("%.2f×", x)
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}

func mib(n int64) string {
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

func sizeText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
}

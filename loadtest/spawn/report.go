package spawn

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// Talk is what the gevent talks measured in Python (2010s hardware), by
// number of tasks: threads and greenlets.
type Talk struct {
	TimeThreads, TimeGreenlets     string
	MemoryThreads, MemoryGreenlets string
}

// TalkFigures are the talks' two tables (docs: DESIGN.md).
var TalkFigures = map[int]Talk{
	100:    {"207 ms", "204 ms", "4.9 GB", "33 MB"},
	1000:   {"327 ms", "223 ms", "11.8 GB", "41 MB"},
	10000:  {"2.55 s", "421 ms", "82 GB", "114 MB"},
	100000: {"25.42 s", "3.06 s", "256 GB+", "858 MB"},
}

// WriteText writes the two tables, each beside the talk's figures, and the
// notes on cells that were not run.
func WriteText(w io.Writer, t *Table) error {
	var notes []string
	note := func(s string) string {
		for i, n := range notes {
			if n == s {
				return fmt.Sprintf("(%d)", i+1)
			}
		}
		notes = append(notes, s)
		return fmt.Sprintf("(%d)", len(notes))
	}
	sizes := t.sizes()

	fmt.Fprintf(w, "Spawn N tasks that sleep %s: time until all have finished (median of the runs, min-max)\n\n", t.Sleep)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "N\tgoroutines\tOS threads\t|\ttalk: greenlets\tthreads (Python)\t")
	for _, n := range sizes {
		g, _ := t.Cell(Goroutine, Time, n)
		th, _ := t.Cell(Thread, Time, n)
		talk := TalkFigures[n]
		fmt.Fprintf(tw, "%s\t%s\t%s\t|\t%s\t%s\t\n", count(n), timeText(g, note), timeText(th, note), dash(talk.TimeGreenlets), dash(talk.TimeThreads))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintf(w, "\nN tasks that sleep: the process's resident memory while all sleep (the increase per task)\n\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "N\tgoroutines\tOS threads\tthreads' virtual size\t|\ttalk: greenlets\tthreads (Python)\t")
	for _, n := range sizes {
		g, _ := t.Cell(Goroutine, Memory, n)
		th, _ := t.Cell(Thread, Memory, n)
		talk := TalkFigures[n]
		vm := ""
		if th.NotRun == "" && th.Failed == "" {
			vm = bytesText(th.VMBytes)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t|\t%s\t%s\t\n", count(n), memoryText(g, note), memoryText(th, note), vm, dash(talk.MemoryGreenlets), dash(talk.MemoryThreads))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nOS threads: goroutines locked to their thread (runtime.LockOSThread); this machine allows about %d: %s.\n", t.ThreadLimit, t.LimitWhy)
	for i, n := range notes {
		fmt.Fprintf(w, "(%d) %s\n", i+1, n)
	}
	return nil
}

func (t *Table) sizes() []int {
	seen := map[int]bool{}
	var sizes []int
	for _, c := range t.Cells {
		if !seen[c.N] {
			seen[c.N] = true
			sizes = append(sizes, c.N)
		}
	}
	sort.Ints(sizes)
	return sizes
}

func timeText(c Cell, note func(string) string) string {
	if s := notRun(c, note); s != "" {
		return s
	}
	if len(c.Seconds) == 0 {
		return "-"
	}
	s := append([]float64(nil), c.Seconds...)
	sort.Float64s(s)
	med := s[len(s)/2]
	if len(s) == 1 {
		return durationText(med)
	}
	if s[len(s)-1] < 1 {
		return fmt.Sprintf("%s (%.0f-%.0f)", durationText(med), s[0]*1000, s[len(s)-1]*1000)
	}
	return fmt.Sprintf("%s (%.2f-%.2f)", durationText(med), s[0], s[len(s)-1])
}

func memoryText(c Cell, note func(string) string) string {
	if s := notRun(c, note); s != "" {
		return s
	}
	per := float64(c.RSSBytes-c.BaseRSSBytes) / float64(max(c.N, 1))
	return fmt.Sprintf("%s (%.1f KB)", bytesText(c.RSSBytes), per/1024)
}

func notRun(c Cell, note func(string) string) string {
	switch {
	case c.NotRun != "":
		return "not run " + note(c.NotRun)
	case c.Failed != "":
		return "failed " + note(c.Failed)
	}
	return ""
}

func durationText(s float64) string {
	if s < 1 {
		return fmt.Sprintf("%.0f ms", s*1000)
	}
	return fmt.Sprintf("%.2f s", s)
}

func bytesText(b int64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GB", float64(b)/(1<<30))
	default:
		return fmt.Sprintf("%.0f MB", float64(b)/(1<<20))
	}
}

func count(n int) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

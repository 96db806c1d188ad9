package spawn

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestTableHasEverySizeKindAndMeasureBesideTheTalk(t *testing.T) {
	const sleep = 20 * time.Millisecond
	tab, err := Run(context.Background(), Options{Sizes: []int{10, 100}, Sleep: sleep, Repeat: 2,
		Threads: ThreadLimit{Max: 50, Why: "a test limit"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(tab.Cells) != 2*2*2 {
		t.Fatalf("%d cells, want 8 (2 sizes × 2 kinds × 2 measures)", len(tab.Cells))
	}
	for _, kind := range []string{Goroutine, Thread} {
		c, _ := tab.Cell(kind, Time, 10)
		if len(c.Seconds) != 2 || c.Seconds[0] < sleep.Seconds() {
			t.Errorf("%s time cell %+v: want 2 runs of at least %s", kind, c, sleep)
		}
		m, _ := tab.Cell(kind, Memory, 10)
		if m.RSSBytes <= 0 || m.VMBytes < m.RSSBytes {
			t.Errorf("%s memory cell %+v: want resident and virtual sizes", kind, m)
		}
	}
	// Ten locked goroutines hold ten OS threads at once.
	if m, _ := tab.Cell(Thread, Memory, 10); m.Threads < 10 {
		t.Errorf("10 sleeping locked goroutines: the process had %d threads", m.Threads)
	}
	// 100 threads are over the test's limit of 50: not run, and said why.
	for _, measure := range []string{Time, Memory} {
		if c, _ := tab.Cell(Thread, measure, 100); c.NotRun == "" || !strings.Contains(c.NotRun, "a test limit") {
			t.Errorf("100 threads (%s) over a limit of 50: %+v", measure, c)
		}
		if c, _ := tab.Cell(Goroutine, measure, 100); c.NotRun != "" || c.Failed != "" {
			t.Errorf("100 goroutines (%s) were not run: %+v", measure, c)
		}
	}
	var out strings.Builder
	if err := WriteText(&out, tab); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"goroutines", "OS threads", "talk: greenlets", "204 ms", "207 ms", "33 MB", "4.9 GB", "not run (1)", "(1) this machine allows about 50"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, out.String())
		}
	}
}

func TestAFailedThreadCountStopsTheLargerOnes(t *testing.T) {
	tab, err := Run(context.Background(), Options{Sizes: []int{1, 2, 3}, Sleep: time.Millisecond, Repeat: 1,
		Threads: ThreadLimit{Max: 1000},
		RunCell: func(_ context.Context, kind, measure string, n int) (Cell, error) {
			if kind == Thread && n >= 2 {
				return Cell{}, errors.New("runtime: failed to create new OS thread")
			}
			return Cell{Kind: kind, Measure: measure, N: n, Seconds: []float64{0.001}}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := tab.Cell(Thread, Time, 2); !strings.Contains(c.Failed, "failed to create") {
		t.Fatalf("2 threads: %+v, want the child's failure", c)
	}
	if c, _ := tab.Cell(Thread, Time, 3); !strings.Contains(c.NotRun, "2 threads") {
		t.Fatalf("3 threads: %+v, want not run after 2 failed", c)
	}
	if c, _ := tab.Cell(Goroutine, Time, 3); c.NotRun != "" {
		t.Fatalf("3 goroutines: %+v, want run", c)
	}
}

func TestMachineThreadLimitNamesItsLimit(t *testing.T) {
	l := MachineThreadLimit()
	if l.Max <= 0 || l.Why == "" {
		t.Fatalf("%+v: want a positive limit and its reason", l)
	}
}

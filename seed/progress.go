package seed

import (
	"fmt"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// progress reports work per table: a redrawn bar on a terminal, a plain line
// every 25% otherwise (CI logs, pipes). A sharded seed loads several
// databases at once: their tables report together, as plain lines (one
// redrawn line cannot show them all), each written whole under mu.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	names int // the width of the tables' names: 11, 14 with user_favorites
}

// printf writes one whole line (or several) among the tables' reports.
func (p *progress) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}

// counter is one table's progress.
type counter struct {
	atomic.Int64
	db    string // the database's label ("" when the seed writes one)
	name  string
	total int64
	start time.Time
	done  chan struct{}
	quit  chan struct{}
}

func (p *progress) start(db, name string, total int64) *counter {
	c := &counter{db: db, name: name, total: total, start: time.Now(), done: make(chan struct{}), quit: make(chan struct{})}
	go func() {
		defer close(c.done)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		nextQuarter := int64(1)
		for {
			select {
			case <-c.quit:
				return
			case <-t.C:
				n := c.Load()
				if p.tty {
					p.printf("\r%s", p.line(c, n))
				} else if c.total > 0 && n*4 >= nextQuarter*c.total && nextQuarter < 4 {
					p.printf("%s\n", p.line(c, n))
					nextQuarter = n*4/c.total + 1
				}
			}
		}
	}()
	return c
}

// finish stops the reporter and prints the table's final line.
func (p *progress) finish(c *counter) {
	close(c.quit)
	<-c.done
	n := c.Load()
	if p.tty {
		p.printf("\r%s\n", p.line(c, n))
	} else {
		p.printf("%s\n", p.line(c, n))
	}
}

func (p *progress) line(c *counter, n int64) string {
	pct := 100.0
	if c.total > 0 {
		pct = min(100*float64(n)/float64(c.total), 100)
	}
	const width = 24
	filled := int(pct / 100 * width)
	el := time.Since(c.start)
	rate := float64(n) / max(el.Seconds(), 1e-9)
	return numbers.Sprintf("  %s%-*s [%s%s] %3.0f%%  %11d rows  %9d rows/s  %5.1fs",
		c.db, p.names, c.name, strings.Repeat("#", filled), strings.Repeat(".", width-filled), pct,
		n, int64(rate), el.Seconds())
}

// numbers prints 1234567 as 1,234,567.
var numbers = message.NewPrinter(language.English)

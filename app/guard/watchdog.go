package guard

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// Watchdog tells a hung dependency from a slow one, and opens a Breaker
// only for the hung one. A dependency that is slow still answers: its
// queries finish, late. A hung one (a paused or wedged server, a network
// that drops packets) answers nothing, and every request that reaches it
// waits out its whole deadline. So the watchdog sends a cheap probe on a
// connection of its own every Every, and trips the breaker when the probe
// gets no answer within Bound while calls are in flight and none of them
// has been answered since the probe went out: no progress at all, not
// little. A probe refused outright (nobody listens) trips it at once. The
// first answer to the probe closes the breaker again. Calls report
// themselves with Begin and End (a query tracer does, and counts the
// pool's dials as calls too: a dial to a blackholed server hangs like a
// statement, and the requests behind it wait as long). The calls in flight
// when it trips fail then (Bind), not at their own deadlines.
type Watchdog struct {
	probe     func(ctx context.Context) error
	every     time.Duration
	bound     time.Duration
	maxWait   time.Duration
	breaker   *Breaker
	isRefused func(error) bool
	log       *slog.Logger

	inflight atomic.Int64 // calls begun and not ended
	answered atomic.Int64 // calls the dependency answered (an error answer counts)
	tripped  atomic.Bool  // the watchdog opened the breaker
	lastRTT  atomic.Int64 // the last probe's round trip, ns
	maxRTT   atomic.Int64 // the slowest answered probe since start, ns
}

// WatchdogOptions configure a Watchdog; zero durations take the defaults.
type WatchdogOptions struct {
	// Probe is one cheap round trip (SELECT 1) on the watchdog's own
	// long-lived connection, never the pool's, nor through a pooler that
	// queues it behind the pool's statements (PgBouncer, stage 7): a full
	// pool must not look like a hung server. It should reconnect when its
	// connection is gone; a reconnect that hangs is a probe unanswered.
	Probe func(ctx context.Context) error
	// Every is how often a probe goes out (250 ms).
	Every time.Duration
	// Bound is how long a probe may go unanswered before the dependency,
	// with calls waiting and none answered, counts as hung (1 s).
	Bound time.Duration
	// MaxWait is how long a probe is waited for before its connection is
	// given up and the next probe reconnects (30 s).
	MaxWait time.Duration
	// Breaker is the breaker it trips and resets.
	Breaker *Breaker
	// IsRefused says whether a probe's error means nobody is there (a
	// refused connection): the breaker opens at once.
	IsRefused func(error) bool
	Log       *slog.Logger
}

// Defaults of WatchdogOptions (docs/reliability.md says where they come from).
const (
	DefaultWatchEvery   = 250 * time.Millisecond
	DefaultWatchBound   = time.Second
	DefaultWatchMaxWait = 30 * time.Second
)

// NewWatchdog returns a watchdog; Run starts it.
func NewWatchdog(o WatchdogOptions) *Watchdog {
	w := &Watchdog{probe: o.Probe, every: o.Every, bound: o.Bound, maxWait: o.MaxWait,
		breaker: o.Breaker, isRefused: o.IsRefused, log: o.Log}
	if w.every <= 0 {
		w.every = DefaultWatchEvery
	}
	if w.bound <= 0 {
		w.bound = DefaultWatchBound
	}
	if w.maxWait <= 0 {
		w.maxWait = DefaultWatchMaxWait
	}
	if w.isRefused == nil {
		w.isRefused = func(error) bool { return false }
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	return w
}

// Begin counts a call sent to the dependency.
func (w *Watchdog) Begin() { w.inflight.Add(1) }

// End counts the call's end; answered says the dependency replied (a
// result or an error of its own), as opposed to the caller giving up.
func (w *Watchdog) End(answered bool) {
	w.inflight.Add(-1)
	if answered {
		w.answered.Add(1)
	}
}

// Bind joins a call's context to the verdict (Breaker.Bind): the call ends
// when the watchdog trips, with context.DeadlineExceeded.
func (w *Watchdog) Bind(ctx context.Context) (context.Context, func()) { return w.breaker.Bind(ctx) }

// RoundTrips are the last probe's round trip and the slowest one answered
// since the start: what the bound is judged against.
func (w *Watchdog) RoundTrips() (last, slowest time.Duration) {
	return time.Duration(w.lastRTT.Load()), time.Duration(w.maxRTT.Load())
}

// Run probes every Every until ctx ends.
func (w *Watchdog) Run(ctx context.Context) {
	t := time.NewTicker(w.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.check(ctx)
	}
}

// check sends one probe and waits for its answer (at most MaxWait),
// tripping the breaker on the way if the dependency makes no progress.
func (w *Watchdog) check(ctx context.Context) {
	before := w.answered.Load()
	start := time.Now()
	pctx, cancel := context.WithTimeout(ctx, w.maxWait)
	defer cancel()
	answer := make(chan error, 1)
	go func() { answer <- w.probe(pctx) }()
	t := time.NewTicker(w.every)
	defer t.Stop()
	for {
		select {
		case err := <-answer:
			w.heard(err, time.Since(start))
			return
		case <-ctx.Done():
			<-answer // the probe's context ends with ctx: it returns soon
			return
		case <-t.C:
		}
		waited := time.Since(start)
		if waited < w.bound || w.tripped.Load() {
			continue
		}
		if n := w.inflight.Load(); n > 0 && w.answered.Load() == before {
			w.trip(fmt.Errorf("no answer in %v, %d queries waiting and none answered", waited.Round(time.Millisecond), n))
		}
	}
}

// heard takes the probe's outcome: an answer closes the breaker the
// watchdog opened; a refusal opens it; any other error (the probe's own
// connection lost or given up) is no verdict, and the next probe reconnects.
func (w *Watchdog) heard(err error, took time.Duration) {
	if err == nil {
		w.lastRTT.Store(int64(took))
		for {
			m := w.maxRTT.Load()
			if int64(took) <= m || w.maxRTT.CompareAndSwap(m, int64(took)) {
				break
			}
		}
		if w.tripped.Swap(false) {
			w.breaker.Reset()
			w.log.Warn("the dependency answers again: breaker closed", "probe", took.Round(time.Millisecond))
		}
		return
	}
	if w.isRefused(err) {
		w.trip(fmt.Errorf("refused: %w", err))
	}
}

func (w *Watchdog) trip(reason error) {
	w.breaker.Trip(reason)
	if !w.tripped.Swap(true) {
		w.log.Warn("the dependency makes no progress: breaker open", "why", reason)
	}
}

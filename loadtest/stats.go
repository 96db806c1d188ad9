package loadtest

import (
	"sort"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// histogram bounds: 1 µs to 2 minutes, 3 significant figures.
func newHistogram() *hdrhistogram.Histogram { return hdrhistogram.New(1, 120_000_000, 3) }

// recorder is one virtual user's private statistics (no locks while
// measuring); the engine merges them at the end.
type recorder struct {
	routes map[string]*routeStats
}

type routeStats struct {
	hist   *hdrhistogram.Histogram
	errors int64
	shed   int64 // sign-ins the server's sign-in gate turned away (signin.go): not errors
	bytes  int64
	causes map[string]int64 // error message → count
	timing *timingStats     // the server's Server-Timing, summed (servertiming.go)
	front  frontStats       // stage 8's front cache: answers that carried X-Front-Cache, hits (frontcache.go)
}

func newRecorder() *recorder { return &recorder{routes: map[string]*routeStats{}} }

func (r *recorder) route(name string) *routeStats {
	s, ok := r.routes[name]
	if !ok {
		s = &routeStats{hist: newHistogram(), causes: map[string]int64{}}
		r.routes[name] = s
	}
	return s
}

// record adds one request: its latency, its size, and its error if any.
func (r *recorder) record(route string, latency time.Duration, bytes int64, err error) {
	r.recordAnswer(route, latency, bytes, err, false)
}

// recordAnswer is record for a request that may have been shed (a sign-in).
func (r *recorder) recordAnswer(route string, latency time.Duration, bytes int64, err error, shed bool) {
	s := r.route(route)
	if shed {
		s.shed++
	}
	s.hist.RecordValue(max(latency.Microseconds(), 1))
	s.bytes += bytes
	if err != nil {
		s.errors++
		if len(s.causes) < 20 || s.causes[err.Error()] > 0 {
			s.causes[err.Error()]++
		}
	}
}

func (r *recorder) merge(o *recorder) {
	for name, os := range o.routes {
		s := r.route(name)
		s.hist.Merge(os.hist)
		s.errors += os.errors
		s.shed += os.shed
		s.bytes += os.bytes
		for c, n := range os.causes {
			s.causes[c] += n
		}
		s.mergeTiming(os.timing)
		s.front.merge(os.front)
	}
}

// RouteResult is one row of the report.
type RouteResult struct {
	Route    string           `json:"route"`
	Requests int64            `json:"requests"`
	RPS      float64          `json:"rps"`
	P50      float64          `json:"p50_ms"`
	P90      float64          `json:"p90_ms"`
	P99      float64          `json:"p99_ms"`
	P999     float64          `json:"p99_9_ms"`
	Max      float64          `json:"max_ms"`
	Errors   int64            `json:"errors"`
	Shed     int64            `json:"shed"` // sign-ins the sign-in gate turned away (503 + Retry-After): not errors
	MBps     float64          `json:"mb_per_s"`
	Causes   map[string]int64 `json:"error_causes,omitempty"`
	Timing   *TimingResult    `json:"server_timing,omitempty"`
	// Front is what stage 8's front cache answered (nil before stage 8).
	Front *FrontResult `json:"front_cache,omitempty"`
}

func ms(us int64) float64 { return float64(us) / 1000 }

func summarize(name string, s *routeStats, elapsed time.Duration) RouteResult {
	n := s.hist.TotalCount()
	sec := max(elapsed.Seconds(), 1e-9)
	r := RouteResult{
		Route: name, Requests: n, RPS: float64(n) / sec, Errors: s.errors, Shed: s.shed,
		MBps: float64(s.bytes) / sec / 1e6,
	}
	if n > 0 {
		r.P50, r.P90 = ms(s.hist.ValueAtQuantile(50)), ms(s.hist.ValueAtQuantile(90))
		r.P99, r.P999 = ms(s.hist.ValueAtQuantile(99)), ms(s.hist.ValueAtQuantile(99.9))
		r.Max = ms(s.hist.Max())
	}
	if len(s.causes) > 0 {
		r.Causes = s.causes
	}
	r.Timing = s.timing.result()
	r.Front = s.front.result()
	return r
}

// results turns merged statistics into sorted route rows and a total row.
func (r *recorder) results(elapsed time.Duration) ([]RouteResult, RouteResult) {
	total := &routeStats{hist: newHistogram(), causes: map[string]int64{}}
	var names []string
	for name, s := range r.routes {
		names = append(names, name)
		total.hist.Merge(s.hist)
		total.errors += s.errors
		total.shed += s.shed
		total.bytes += s.bytes
		total.mergeTiming(s.timing)
		total.front.merge(s.front)
	}
	sort.Strings(names)
	rows := make([]RouteResult, 0, len(names))
	for _, name := range names {
		rows = append(rows, summarize(name, r.routes[name], elapsed))
	}
	return rows, summarize("total", total, elapsed)
}

package obs

import (
	"context"
	"embed"
	"encoding/json"
	"io/fs"
	"math"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// The dashboard's front end: a page, its script and stylesheet, and the
// vendored chart library (uPlot, MIT, its LICENSE beside it). No build step.
//
//go:embed dashboard
var dashboardFiles embed.FS

// window is how much history the dashboard keeps: one sample a second.
const window = 300

// Panel is one chart of the dashboard: one or more series over the window.
type Panel struct {
	ID     string   `json:"id"`
	Title  string   `json:"title"`
	Unit   string   `json:"unit"`
	Note   string   `json:"note,omitempty"`
	Series []Series `json:"series"`
}

// Series is one line of a panel; Value computes its point from a Sample
// (NaN: no value this second, drawn as a gap).
type Series struct {
	Label string                  `json:"label"`
	Value func(s *Sample) float64 `json:"-"`
}

// Info is the header of the page: the stage it runs, its schema and pid,
// and a note on what this dashboard can and cannot see.
type Info struct {
	Stage   int    `json:"stage"`
	Name    string `json:"name"`
	Summary string `json:"summary"`
	Schema  string `json:"schema"`
	PID     int    `json:"pid"`
	Note    string `json:"note,omitempty"`
}

// Dashboard samples a registry once a second into a ring of window
// samples and serves them as JSON to the page, which polls once a second.
type Dashboard struct {
	info   Info
	reg    prometheus.Gatherer
	panels []Panel

	mu     sync.Mutex
	snaps  []*snapshot // the last few gathers, newest last (for rates and quantiles)
	times  []int64     // unix milliseconds of each point in the ring
	points [][]float64 // per point: one value per series, panels in order
}

// NewDashboard draws panels from what reg gathers (a process's registry, or
// stage 7's gatherer over its instances) under the header info.
func NewDashboard(info Info, reg prometheus.Gatherer, panels []Panel) *Dashboard {
	return &Dashboard{info: info, reg: reg, panels: panels}
}

// Run samples until ctx ends.
func (d *Dashboard) Run(ctx context.Context) {
	d.sample(time.Now())
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			d.sample(now)
		}
	}
}

// sample gathers the registry once and computes every series' point.
func (d *Dashboard) sample(now time.Time) {
	fams, err := d.reg.Gather()
	if err != nil && len(fams) == 0 {
		return
	}
	snap := &snapshot{t: now, fams: map[string]*dto.MetricFamily{}}
	for _, f := range fams {
		snap.fams[f.GetName()] = f
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.snaps = append(d.snaps, snap)
	if len(d.snaps) > quantileSpan+1 {
		d.snaps = d.snaps[1:]
	}
	if len(d.snaps) < 2 {
		return // a rate needs two samples
	}
	s := &Sample{now: snap, prev: d.snaps[len(d.snaps)-2], span: d.snaps[0]}
	var point []float64
	for _, p := range d.panels {
		for _, se := range p.Series {
			point = append(point, se.Value(s))
		}
	}
	d.times = append(d.times, now.UnixMilli())
	d.points = append(d.points, point)
	if len(d.times) > window {
		d.times, d.points = d.times[1:], d.points[1:]
	}
}

// dashboardData is what the page polls: the header and panels (on the first
// poll), then the points after `since`, as uPlot's column arrays.
type dashboardData struct {
	Info   *Info              `json:"info,omitempty"`
	Panels []Panel            `json:"panels,omitempty"`
	Times  []float64          `json:"t"` // unix seconds
	Data   map[string][][]num `json:"data"`
	Now    int64              `json:"now"` // unix milliseconds: the next poll's since
}

// num is a float that encodes NaN and infinities as null.
type num float64

func (n num) MarshalJSON() ([]byte, error) {
	f := float64(n)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, f, 'g', 6, 64), nil
}

func (d *Dashboard) data(since int64, full bool) dashboardData {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := dashboardData{Data: map[string][][]num{}, Now: time.Now().UnixMilli()}
	if full {
		info := d.info
		out.Info, out.Panels = &info, d.panels
	}
	first := sort.Search(len(d.times), func(i int) bool { return d.times[i] > since })
	for _, t := range d.times[first:] {
		out.Times = append(out.Times, float64(t)/1000)
	}
	col := 0
	for _, p := range d.panels {
		cols := make([][]num, len(p.Series))
		for i := range p.Series {
			cols[i] = make([]num, 0, len(d.times)-first)
			for _, pt := range d.points[first:] {
				cols[i] = append(cols[i], num(pt[col+i]))
			}
		}
		out.Data[p.ID] = cols
		col += len(p.Series)
	}
	return out
}

// Handler serves the page, its assets and data.json.
func (d *Dashboard) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(dashboardFiles, "dashboard")
	files := http.FileServerFS(static)
	mux.Handle("GET /dashboard/", http.StripPrefix("/dashboard/", files))
	mux.HandleFunc("GET /dashboard", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, static, "index.html")
	})
	mux.HandleFunc("GET /dashboard/data.json", func(w http.ResponseWriter, r *http.Request) {
		since, _ := strconv.ParseInt(r.URL.Query().Get("since"), 10, 64)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(d.data(since, since == 0))
	})
	return mux
}

// quantileSpan is how many seconds the latency quantiles look back: one
// second holds too few requests at the slow stages to rank.
const quantileSpan = 5

// Sample is what a Series computes its point from: the registry now, a
// second ago, and quantileSpan seconds ago.
type Sample struct {
	now, prev, span *snapshot
}

type snapshot struct {
	t    time.Time
	fams map[string]*dto.MetricFamily
}

// Filter selects series by their labels; nil selects all.
type Filter func(labels map[string]string) bool

// Label selects series whose label name has one of values.
func Label(name string, values ...string) Filter {
	return func(l map[string]string) bool {
		for _, v := range values {
			if l[name] == v {
				return true
			}
		}
		return false
	}
}

func labels(m *dto.Metric) map[string]string {
	out := make(map[string]string, len(m.GetLabel()))
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}

// total sums a family's value over the selected series: counters and gauges
// their value, histograms and summaries their count (or sum, with sum set).
func (s *snapshot) total(name string, f Filter, sum bool) (float64, bool) {
	fam, ok := s.fams[name]
	if !ok {
		return 0, false
	}
	var v float64
	for _, m := range fam.GetMetric() {
		if f != nil && !f(labels(m)) {
			continue
		}
		switch {
		case m.Counter != nil:
			v += m.Counter.GetValue()
		case m.Gauge != nil:
			v += m.Gauge.GetValue()
		case m.Untyped != nil:
			v += m.Untyped.GetValue()
		case m.Histogram != nil && sum:
			v += m.Histogram.GetSampleSum()
		case m.Histogram != nil:
			v += float64(m.Histogram.GetSampleCount())
		case m.Summary != nil && sum:
			v += m.Summary.GetSampleSum()
		case m.Summary != nil:
			v += float64(m.Summary.GetSampleCount())
		}
	}
	return v, true
}

// Gauge is the current value of a gauge (summed over the selected series).
func (s *Sample) Gauge(name string, f Filter) float64 {
	v, ok := s.now.total(name, f, false)
	if !ok {
		return math.NaN()
	}
	return v
}

// Rate is a counter's (or a histogram's count's) increase per second over the last second.
func (s *Sample) Rate(name string, f Filter) float64 { return s.rate(name, f, false) }

// RateSum is a histogram's or summary's sum's increase per second.
func (s *Sample) RateSum(name string, f Filter) float64 { return s.rate(name, f, true) }

func (s *Sample) rate(name string, f Filter, sum bool) float64 {
	a, ok1 := s.prev.total(name, f, sum)
	b, ok2 := s.now.total(name, f, sum)
	dt := s.now.t.Sub(s.prev.t).Seconds()
	if !ok1 || !ok2 || dt <= 0 {
		return math.NaN()
	}
	return max(b-a, 0) / dt
}

// Per is a/b, NaN when b is 0 (nothing happened: no point, not a zero).
func Per(a, b float64) float64 {
	if b == 0 || math.IsNaN(b) {
		return math.NaN()
	}
	return a / b
}

// Quantile is the q-quantile of a histogram's observations over the last
// quantileSpan seconds, interpolated within buckets (as Prometheus's
// histogram_quantile does); NaN with no observations.
func (s *Sample) Quantile(name string, q float64, f Filter) float64 {
	now, old := buckets(s.now, name, f), buckets(s.span, name, f)
	if now == nil {
		return math.NaN()
	}
	type bucket struct{ le, n float64 }
	var bs []bucket
	for le, n := range now {
		bs = append(bs, bucket{le, n - old[le]})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	total := bs[len(bs)-1].n // the +Inf bucket
	if total <= 0 {
		return math.NaN()
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for _, b := range bs {
		if b.n >= rank {
			if math.IsInf(b.le, 1) {
				return lower // beyond the last bound: say the bound
			}
			if b.n == below {
				return b.le
			}
			return lower + (b.le-lower)*(rank-below)/(b.n-below)
		}
		lower, below = b.le, b.n
	}
	return lower
}

// buckets sums the cumulative bucket counts of the selected series, with +Inf.
func buckets(s *snapshot, name string, f Filter) map[float64]float64 {
	fam, ok := s.fams[name]
	if !ok {
		return nil
	}
	out := map[float64]float64{}
	for _, m := range fam.GetMetric() {
		if m.Histogram == nil || (f != nil && !f(labels(m))) {
			continue
		}
		for _, b := range m.Histogram.GetBucket() {
			out[b.GetUpperBound()] += float64(b.GetCumulativeCount())
		}
		out[math.Inf(1)] += float64(m.Histogram.GetSampleCount())
	}
	return out
}

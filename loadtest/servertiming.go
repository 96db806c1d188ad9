package loadtest

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
)

// The server says where each request's time went in its Server-Timing
// header (db with its query count, cache, session, render, total). The tool
// adds it up per route, so a report shows SQL statements per request and
// where a route's time goes, next to the latency the client saw.

// timingParts are the parts the report shows, in order; "other" is the
// server's total minus them (handler code, encoding, writing).
var timingParts = []string{"db", "cache", "session", "render"}

// timingStats is one route's sum of Server-Timing headers.
type timingStats struct {
	n     int64              // responses that carried the header
	sql   int64              // SQL statements (db and session queries)
	ms    [4]float64         // per timingParts
	total float64            // the server's total
	other map[string]float64 // parts this tool does not know, for the JSON
}

// add parses one header: `db;dur=1.2;desc="3 queries", cache;dur=0.1, …`.
func (s *timingStats) add(h []byte) {
	if len(h) == 0 {
		return
	}
	s.n++
	for len(h) > 0 {
		var item []byte
		item, h = cutTimingItem(h)
		name, params, _ := bytes.Cut(item, []byte(";"))
		name = bytes.TrimSpace(name)
		var dur float64
		var desc []byte
		for len(params) > 0 {
			var p []byte
			p, params, _ = bytes.Cut(params, []byte(";"))
			k, v, _ := bytes.Cut(bytes.TrimSpace(p), []byte("="))
			switch string(k) {
			case "dur":
				dur, _ = strconv.ParseFloat(string(v), 64)
			case "desc":
				desc = bytes.Trim(v, `"`)
			}
		}
		switch string(name) {
		case "db", "session":
			// "3 queries": the count before the space.
			n, _, _ := bytes.Cut(desc, []byte(" "))
			if q, err := strconv.Atoi(string(n)); err == nil {
				s.sql += int64(q)
			}
		}
		switch string(name) {
		case "db":
			s.ms[0] += dur
		case "cache":
			s.ms[1] += dur
		case "session":
			s.ms[2] += dur
		case "render":
			s.ms[3] += dur
		case "total":
			s.total += dur
		default:
			if s.other == nil {
				s.other = map[string]float64{}
			}
			s.other[string(name)] += dur
		}
	}
}

// cutTimingItem splits off the first comma-separated item, minding quotes.
func cutTimingItem(h []byte) (item, rest []byte) {
	quoted := false
	for i, c := range h {
		switch c {
		case '"':
			quoted = !quoted
		case ',':
			if !quoted {
				return h[:i], h[i+1:]
			}
		}
	}
	return h, nil
}

func (s *timingStats) merge(o *timingStats) {
	s.n += o.n
	s.sql += o.sql
	s.total += o.total
	for i := range s.ms {
		s.ms[i] += o.ms[i]
	}
	for k, v := range o.other {
		if s.other == nil {
			s.other = map[string]float64{}
		}
		s.other[k] += v
	}
}

// TimingResult is a route's Server-Timing, as means per request (ms).
type TimingResult struct {
	Responses     int64              `json:"responses"` // that carried the header
	SQLPerRequest float64            `json:"sql_per_request"`
	DB            float64            `json:"db_ms"`
	Cache         float64            `json:"cache_ms"`
	Session       float64            `json:"session_ms"`
	Render        float64            `json:"render_ms"`
	Other         float64            `json:"other_ms"` // total minus the parts above
	Total         float64            `json:"total_ms"` // the server's own time, to its header
	Extra         map[string]float64 `json:"extra_ms,omitempty"`
}

func (s *timingStats) result() *TimingResult {
	if s == nil || s.n == 0 {
		return nil
	}
	n := float64(s.n)
	r := &TimingResult{Responses: s.n, SQLPerRequest: float64(s.sql) / n,
		DB: s.ms[0] / n, Cache: s.ms[1] / n, Session: s.ms[2] / n, Render: s.ms[3] / n, Total: s.total / n}
	r.Other = max(r.Total-r.DB-r.Cache-r.Session-r.Render, 0)
	for k, v := range s.other {
		if r.Extra == nil {
			r.Extra = map[string]float64{}
		}
		r.Extra[k] = v / n
	}
	return r
}

// recordTiming adds a response's Server-Timing to its route.
func (r *recorder) recordTiming(route string, header []byte) {
	if len(header) == 0 {
		return
	}
	s := r.route(route)
	if s.timing == nil {
		s.timing = &timingStats{}
	}
	s.timing.add(header)
}

// writeTiming writes the second table of a run: SQL per request and where
// each route's server time goes. Servers without Server-Timing get none.
func writeTiming(w io.Writer, r *Result) error {
	if r.Total.Timing == nil {
		return nil
	}
	fmt.Fprintln(w, "\nwhere the server's time goes (its Server-Timing, mean ms per request; other = total minus the parts)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "route\tSQL/req\tdb\tcache\tsession\trender\tother\ttotal\t")
	for _, row := range append(append([]RouteResult{}, r.Routes...), r.Total) {
		if t := row.Timing; t != nil {
			fmt.Fprintf(tw, "%s\t%.1f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t\n",
				row.Route, t.SQLPerRequest, t.DB, t.Cache, t.Session, t.Render, t.Other, t.Total)
		}
	}
	return tw.Flush()
}

func (s *routeStats) mergeTiming(o *timingStats) {
	if o == nil {
		return
	}
	if s.timing == nil {
		s.timing = &timingStats{}
	}
	s.timing.merge(o)
}

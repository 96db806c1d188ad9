package obs

import (
	"strconv"
	"strings"
	"time"

	"flickrkillr/models/timing"
)

// RouteHeader carries a CGI child's echo route to its parent (stage 0), which
// labels its metrics with it and removes it from the answer.
const RouteHeader = "X-Flickrkillr-Route"

// ServerTiming is the Server-Timing header of a request (browser devtools
// draw it): where its time went, and how many SQL statements it sent.
//
//	db;dur=3.10;desc="4 queries", cache;dur=0.41;desc="2 hits, 1 miss",
//	session;dur=0.52, redis;desc="2 round trips", render;dur=0.80, total;dur=5.20
//
// The parts do not overlap: SQL sent by the session store (stages 0-1) is
// session time, and render time excludes lookups made while rendering.
// total is the time until the header was written.
func ServerTiming(t *timing.Timings, total time.Duration) string {
	b := make([]byte, 0, 160)
	b = append(b, "db;dur="...)
	b = appendMS(b, t.Dur(timing.DB))
	b = append(b, `;desc="`...)
	b = appendCount(b, t.Queries(timing.DB), "query", "queries")
	b = append(b, `", cache;dur=`...)
	b = appendMS(b, t.Dur(timing.Cache))
	if hits, misses, errs := t.Cache(); hits+misses+errs > 0 {
		b = append(b, `;desc="`...)
		b = appendCount(b, hits, "hit", "hits")
		b = append(b, ", "...)
		b = appendCount(b, misses, "miss", "misses")
		if errs > 0 {
			b = append(b, ", "...)
			b = appendCount(b, errs, "error", "errors")
		}
		b = append(b, '"')
	}
	b = append(b, ", session;dur="...)
	b = appendMS(b, t.Dur(timing.Session))
	if n := t.Queries(timing.Session); n > 0 {
		b = append(b, `;desc="`...)
		b = appendCount(b, n, "query", "queries")
		b = append(b, '"')
	}
	if n := t.RedisRoundTrips(); n > 0 {
		// The session's and the cache's round trips to Redis together (a
		// pipeline is one): what a cached page should keep at one or two.
		b = append(b, `, redis;desc="`...)
		b = appendCount(b, n, "round trip", "round trips")
		b = append(b, '"')
	}
	b = append(b, ", render;dur="...)
	b = appendMS(b, t.Dur(timing.Render))
	b = append(b, ", total;dur="...)
	b = appendMS(b, total)
	return string(b)
}

func appendMS(b []byte, d time.Duration) []byte {
	return strconv.AppendFloat(b, float64(d)/float64(time.Millisecond), 'f', 2, 64)
}

func appendCount(b []byte, n int64, one, many string) []byte {
	b = strconv.AppendInt(b, n, 10)
	b = append(b, ' ')
	if n == 1 {
		return append(b, one...)
	}
	return append(b, many...)
}

// TimingEntry is one metric of a Server-Timing header.
type TimingEntry struct {
	Name string
	Dur  float64 // milliseconds
	Desc string
}

// ParseServerTiming reads a Server-Timing header (the parts this app sends:
// name;dur=…;desc="…", comma-separated; a desc holding a comma is quoted).
func ParseServerTiming(h string) []TimingEntry {
	var out []TimingEntry
	for h != "" {
		var item string
		item, h = cutItem(h)
		fields := strings.Split(item, ";")
		e := TimingEntry{Name: strings.TrimSpace(fields[0])}
		for _, f := range fields[1:] {
			k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
			switch strings.ToLower(k) {
			case "dur":
				e.Dur, _ = strconv.ParseFloat(v, 64)
			case "desc":
				e.Desc = strings.Trim(v, `"`)
			}
		}
		if e.Name != "" {
			out = append(out, e)
		}
	}
	return out
}

// cutItem splits off the first comma-separated item, minding quotes.
func cutItem(h string) (item, rest string) {
	quoted := false
	for i := 0; i < len(h); i++ {
		switch h[i] {
		case '"':
			quoted = !quoted
		case ',':
			if !quoted {
				return h[:i], h[i+1:]
			}
		}
	}
	return h, ""
}

// QueriesIn reads the count of a desc like "4 queries" (0 when there is none).
func QueriesIn(desc string) int {
	n, _ := strconv.Atoi(strings.Fields(desc + " 0")[0])
	return n
}

// ObserveReported counts one request answered by another process (a CGI
// child, stage 0) from what its Server-Timing header reported: its route,
// duration as the parent saw it, SQL statements and time parts.
func (m *Metrics) ObserveReported(route, method string, code int, took time.Duration, timing []TimingEntry) {
	m.requests.WithLabelValues(route, method, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(route).Observe(took.Seconds())
	var sql int
	for _, e := range timing {
		switch e.Name {
		case "db", "session":
			sql += QueriesIn(e.Desc)
			fallthrough
		case "cache", "render":
			m.parts.WithLabelValues(route, e.Name).Add(e.Dur / 1000)
		}
	}
	m.sql.Add(float64(sql))
	m.sqlPerReq.Observe(float64(sql))
}

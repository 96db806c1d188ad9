package loadtest

import (
	"bytes"
	"fmt"
	"io"
	"text/tabwriter"
)

// Stage 8's front cache says on each page whether it answered: nginx's
// X-Front-Cache is "memcached" for a page from memcached ("miss" and
// "bypass" when an instance rendered it), and proxy_cache's status (HIT,
// STALE, UPDATING, MISS, EXPIRED, BYPASS) with --front-cache proxy. The
// tool counts, per route, the answers that carried it and the hits: the
// hit ratio per page kind.

// frontStats is one route's front-cache answers.
type frontStats struct {
	seen, hits int64
}

// frontHit says whether an X-Front-Cache value is a page the front served
// without an instance (a stale proxy_cache copy counts: no instance ran).
func frontHit(v []byte) bool {
	for _, h := range []string{"memcached", "HIT", "STALE", "UPDATING"} {
		if bytes.Equal(v, []byte(h)) {
			return true
		}
	}
	return false
}

// recordFront counts a response's X-Front-Cache.
func (r *recorder) recordFront(route string, v []byte) {
	if len(v) == 0 {
		return
	}
	s := r.route(route)
	s.front.seen++
	if frontHit(v) {
		s.front.hits++
	}
}

func (s *frontStats) merge(o frontStats) { s.seen += o.seen; s.hits += o.hits }

// FrontResult is a route's front-cache answers: Responses carried the
// header, Hits came from the front cache, HitRatio is Hits/Responses.
type FrontResult struct {
	Responses int64   `json:"responses"`
	Hits      int64   `json:"hits"`
	HitRatio  float64 `json:"hit_ratio"`
}

func (s frontStats) result() *FrontResult {
	if s.seen == 0 {
		return nil
	}
	return &FrontResult{Responses: s.seen, Hits: s.hits, HitRatio: float64(s.hits) / float64(s.seen)}
}

// writeFront writes a run's front-cache table: none without a front cache.
func writeFront(w io.Writer, r *Result) error {
	if r.Total.Front == nil {
		return nil
	}
	fmt.Fprintln(w, "\nfront cache (X-Front-Cache): answers from the front, per route")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "route\tpages\tfrom the front\thit ratio\t")
	for _, rr := range append(r.Routes, r.Total) {
		if f := rr.Front; f != nil {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f%%\t\n", rr.Route, f.Responses, f.Hits, 100*f.HitRatio)
		}
	}
	return tw.Flush()
}

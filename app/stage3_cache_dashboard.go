package app

import "flickrkillr/app/obs"

// Stage 3: the cache's panels. Cache lookups are counted by the cache itself
// (models/cache.go, into the request's Timings) and summed into
// flickrkillr_cache_lookups_total, image reads by
// source into flickrkillr_image_reads_total; these panels show what share
// the cache answers.
func init() {
	registerPanels(3, func(m *obs.Metrics) []obs.Panel {
		const lookups, images = "flickrkillr_cache_lookups_total", "flickrkillr_image_reads_total"
		hitRatio := func(s *obs.Sample) float64 {
			hits := s.Rate(lookups, obs.Label("result", "hit"))
			return 100 * obs.Per(hits, hits+s.Rate(lookups, obs.Label("result", "miss", "error")))
		}
		memoryRatio := func(s *obs.Sample) float64 {
			return 100 * obs.Per(s.Rate(images, obs.Label("source", "memory")), s.Rate(images, nil))
		}
		return []obs.Panel{
			{ID: "cache", Title: "Cache hit ratio", Unit: "%", Note: "cache lookups; images from memory", Series: []obs.Series{
				{Label: "cache hits", Value: hitRatio},
				{Label: "images from memory", Value: memoryRatio},
			}},
			{ID: "cacheops", Title: "Cache lookups per second", Unit: "lookups/s", Series: []obs.Series{
				{Label: "hits", Value: func(s *obs.Sample) float64 { return s.Rate(lookups, obs.Label("result", "hit")) }},
				{Label: "misses", Value: func(s *obs.Sample) float64 { return s.Rate(lookups, obs.Label("result", "miss")) }},
				{Label: "errors", Value: func(s *obs.Sample) float64 { return s.Rate(lookups, obs.Label("result", "error")) }},
			}},
		}
	})
}

package app

// Stage 3: the cache's panels. Cache lookups are counted by the cache itself
// (models/cache.go, into the request's Timings) and summed into
// flickrkillr_cache_lookups_total, image reads by
// source into flickrkillr_image_reads_total; these panels show what share
// the cache answers.
func init() {
	registerPanels(3, func(m *Metrics) []Panel {
		const lookups, images = "flickrkillr_cache_lookups_total", "flickrkillr_image_reads_total"
		hitRatio := func(s *Sample) float64 {
			hits := s.Rate(lookups, Label("result", "hit"))
			return 100 * Per(hits, hits+s.Rate(lookups, Label("result", "miss", "error")))
		}
		memoryRatio := func(s *Sample) float64 {
			return 100 * Per(s.Rate(images, Label("source", "memory")), s.Rate(images, nil))
		}
		return []Panel{
			{ID: "cache", Title: "Cache hit ratio", Unit: "%", Note: "cache lookups; images from memory", Series: []Series{
				{"cache hits", hitRatio},
				{"images from memory", memoryRatio},
			}},
			{ID: "cacheops", Title: "Cache lookups per second", Unit: "lookups/s", Series: []Series{
				{"hits", func(s *Sample) float64 { return s.Rate(lookups, Label("result", "hit")) }},
				{"misses", func(s *Sample) float64 { return s.Rate(lookups, Label("result", "miss")) }},
				{"errors", func(s *Sample) float64 { return s.Rate(lookups, Label("result", "error")) }},
			}},
		}
	})
}

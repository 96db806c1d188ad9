package app

// Stage 6: the queue's panels ("the dashboard: turning point"): what piles
// up, how long the oldest job waits, whether the workers keep up.
func init() {
	registerPanels(6, func(m *Metrics) []Panel {
		const jobs, total, workers = "flickrkillr_queue_jobs", "flickrkillr_queue_jobs_total", "flickrkillr_queue_workers"
		gauge := func(name, label, value string) func(s *Sample) float64 {
			return func(s *Sample) float64 { return s.Gauge(name, Label(label, value)) }
		}
		rate := func(outcome string) func(s *Sample) float64 {
			return func(s *Sample) float64 { return s.Rate(total, Label("outcome", outcome)) }
		}
		return []Panel{
			{ID: "queue", Title: "Image queue", Unit: "jobs", Note: "every process's queue, from Redis", Series: []Series{
				{"waiting", gauge(jobs, "state", "ready")},
				{"processing", gauge(jobs, "state", "processing")},
				{"retrying", gauge(jobs, "state", "delayed")},
				{"dead", gauge(jobs, "state", "dead")},
			}},
			{ID: "queuewait", Title: "Oldest waiting job", Unit: "s", Series: []Series{
				{"waited", func(s *Sample) float64 { return s.Gauge("flickrkillr_queue_oldest_job_seconds", nil) }},
			}},
			{ID: "workers", Title: "Image workers", Unit: "workers", Note: "all processes", Series: []Series{
				{"busy", gauge(workers, "state", "busy")},
				{"total", gauge(workers, "state", "total")},
			}},
			{ID: "jobrate", Title: "Image jobs per second", Unit: "jobs/s", Series: []Series{
				{"done", rate("done")}, {"retried", rate("retried")}, {"reaped", rate("reaped")}, {"dead", rate("dead")},
			}},
		}
	})
}

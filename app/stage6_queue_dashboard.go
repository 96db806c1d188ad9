package app

import "flickrkillr/app/obs"

// Stage 6: the queue's panels ("the dashboard: turning point"): what piles
// up, how long the oldest job waits, whether the workers keep up.
func init() {
	registerPanels(6, func(m *obs.Metrics) []obs.Panel {
		const jobs, total, workers = "flickrkillr_queue_jobs", "flickrkillr_queue_jobs_total", "flickrkillr_queue_workers"
		gauge := func(name, label, value string) func(s *obs.Sample) float64 {
			return func(s *obs.Sample) float64 { return s.Gauge(name, obs.Label(label, value)) }
		}
		rate := func(outcome string) func(s *obs.Sample) float64 {
			return func(s *obs.Sample) float64 { return s.Rate(total, obs.Label("outcome", outcome)) }
		}
		return []obs.Panel{
			{ID: "queue", Title: "Image queue", Unit: "jobs", Note: "every process's queue, from Redis", Series: []obs.Series{
				{Label: "waiting", Value: gauge(jobs, "state", "ready")},
				{Label: "processing", Value: gauge(jobs, "state", "processing")},
				{Label: "retrying", Value: gauge(jobs, "state", "delayed")},
				{Label: "dead", Value: gauge(jobs, "state", "dead")},
			}},
			{ID: "queuewait", Title: "Oldest waiting job", Unit: "s", Series: []obs.Series{
				{Label: "waited", Value: func(s *obs.Sample) float64 { return s.Gauge("flickrkillr_queue_oldest_job_seconds", nil) }},
			}},
			{ID: "workers", Title: "Image workers", Unit: "workers", Note: "all processes", Series: []obs.Series{
				{Label: "busy", Value: gauge(workers, "state", "busy")},
				{Label: "total", Value: gauge(workers, "state", "total")},
			}},
			{ID: "jobrate", Title: "Image jobs per second", Unit: "jobs/s", Series: []obs.Series{
				{Label: "done", Value: rate("done")}, {Label: "retried", Value: rate("retried")}, {Label: "reaped", Value: rate("reaped")}, {Label: "dead", Value: rate("dead")},
			}},
		}
	})
}

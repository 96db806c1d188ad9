package jobqueue

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector puts the queue's figures in /metrics (and so on the dashboard).
// They are read from Redis at each scrape, so every process shows the whole
// queue: what waits, runs, retries and died, the oldest job's wait, the
// workers of every process and how many are busy, and counters of the
// jobs done, retried, reaped and dead since the queue began. The names are
// stage 6's image queue's (flickrkillr_queue_*): one queue per registry.
func Collector(q *Queue) prometheus.Collector { return collector{q} }

type collector struct{ q *Queue }

var (
	queueJobsDesc = prometheus.NewDesc("flickrkillr_queue_jobs",
		"Stage 6: image jobs in the queue by state: ready (waiting), processing, delayed (waiting for a retry), dead.", []string{"state"}, nil)
	queueOldestDesc = prometheus.NewDesc("flickrkillr_queue_oldest_job_seconds",
		"Stage 6: how long the oldest waiting image job has waited (0: none waits).", nil, nil)
	queueWorkersDesc = prometheus.NewDesc("flickrkillr_queue_workers",
		"Stage 6: image workers in every process that reported in the last 5 s, by state: total, busy.", []string{"state"}, nil)
	queueCountDesc = prometheus.NewDesc("flickrkillr_queue_jobs_total",
		"Stage 6: image jobs since the queue began, by outcome: done, retried (a failed attempt that will be retried), reaped (its worker died), dead.", []string{"outcome"}, nil)
)

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{queueJobsDesc, queueOldestDesc, queueWorkersDesc, queueCountDesc} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	s, err := c.q.Stats(ctx)
	if err != nil {
		return // Redis is away: no queue figures in this scrape
	}
	gauge := func(d *prometheus.Desc, v int64, label ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), label...)
	}
	gauge(queueJobsDesc, s.Ready, "ready")
	gauge(queueJobsDesc, s.Processing, "processing")
	gauge(queueJobsDesc, s.Delayed, "delayed")
	gauge(queueJobsDesc, s.Dead, "dead")
	ch <- prometheus.MustNewConstMetric(queueOldestDesc, prometheus.GaugeValue, s.Oldest.Seconds())
	gauge(queueWorkersDesc, s.Workers, "total")
	gauge(queueWorkersDesc, s.Busy, "busy")
	for outcome, n := range map[string]int64{"done": s.Done, "retried": s.Retried, "reaped": s.Reaped, "dead": s.Died} {
		ch <- prometheus.MustNewConstMetric(queueCountDesc, prometheus.CounterValue, float64(n), outcome)
	}
}

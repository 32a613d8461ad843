package metrics

import (
	"log/slog"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
)

// QueueCollector exports asynq's queue state at scrape time, under the
// metric names of asynq's own x/metrics collector, so its dashboards work
// (that module pins an old asynq and go-redis v8, hence this copy).
type QueueCollector struct {
	inspector *asynq.Inspector
	log       *slog.Logger
}

// NewQueueCollector reads queues through inspector.
func NewQueueCollector(inspector *asynq.Inspector, log *slog.Logger) *QueueCollector {
	return &QueueCollector{inspector: inspector, log: log}
}

var (
	descSize  = prometheus.NewDesc("asynq_queue_size", "Tasks in a queue, in any state.", []string{"queue"}, nil)
	descTasks = prometheus.NewDesc("asynq_tasks_enqueued_total", "Tasks in a queue, by state.",
		[]string{"queue", "state"}, nil)
	descLatency = prometheus.NewDesc("asynq_queue_latency_seconds",
		"Age of the oldest pending task in a queue.", []string{"queue"}, nil)
	descMemory = prometheus.NewDesc("asynq_queue_memory_usage_approx_bytes",
		"Approximate Redis memory a queue uses.", []string{"queue"}, nil)
	descProcessed = prometheus.NewDesc("asynq_tasks_processed_total", "Tasks processed today (asynq's daily counter).",
		[]string{"queue"}, nil)
	descFailed = prometheus.NewDesc("asynq_tasks_failed_total", "Tasks failed today (asynq's daily counter).",
		[]string{"queue"}, nil)
	descPaused = prometheus.NewDesc("asynq_queue_paused_total", "1 when the queue is paused.", []string{"queue"}, nil)
)

// Describe implements prometheus.Collector.
func (c *QueueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSize, descTasks, descLatency, descMemory, descProcessed, descFailed, descPaused} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *QueueCollector) Collect(ch chan<- prometheus.Metric) {
	queues, err := c.inspector.Queues()
	if err != nil {
		c.log.Warn("queue metrics: list queues", "err", err)
		return
	}
	for _, q := range queues {
		info, err := c.inspector.GetQueueInfo(q)
		if err != nil {
			c.log.Warn("queue metrics: queue info", "queue", q, "err", err)
			continue
		}
		gauge := func(d *prometheus.Desc, v float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{q}, labels...)...)
		}
		gauge(descSize, float64(info.Size))
		for state, n := range map[string]int{
			"active": info.Active, "pending": info.Pending, "scheduled": info.Scheduled,
			"retry": info.Retry, "archived": info.Archived, "completed": info.Completed,
		} {
			gauge(descTasks, float64(n), state)
		}
		gauge(descLatency, info.Latency.Seconds())
		gauge(descMemory, float64(info.MemoryUsage))
		gauge(descProcessed, float64(info.Processed))
		gauge(descFailed, float64(info.Failed))
		paused := 0.0
		if info.Paused {
			paused = 1
		}
		gauge(descPaused, paused)
	}
}

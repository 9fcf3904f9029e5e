// Package metrics holds the server's Prometheus metrics: what each request took, what
// sync and attachments moved, and the state of the database as seen at scrape time. Each
// server has a registry of its own, so that several servers in one test process count
// apart.
package metrics

import (
	"context"
	"crypto/subtle"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/opendataensemble/synkronus/db"
	"github.com/opendataensemble/synkronus/gen/dbgen"
)

// NoOperation labels requests that reached no operation of the contract (unknown paths,
// the served spec, the docs page).
const NoOperation = "none"

// Metrics are one server's metrics.
type Metrics struct {
	registry *prometheus.Registry
	requests *prometheus.HistogramVec
	// RecordsPushed counts the records pushes accepted: stored, or kept in the history as
	// the losing side of a conflict. Replayed pushes are not counted again.
	RecordsPushed prometheus.Counter
	// RecordsPulled counts the records pull pages carried.
	RecordsPulled prometheus.Counter
	// Conflicts counts pushed records that conflicted with a stored or pushed copy.
	Conflicts prometheus.Counter
	// FailedRecords counts pushed records refused (and quarantined), by reason code.
	FailedRecords *prometheus.CounterVec
	// ReplayedPushes counts pushes answered from their receipt (a retried transmission).
	ReplayedPushes prometheus.Counter
	// AttachmentBytes counts attachment bytes received in uploads ("in") and sent in
	// downloads ("out").
	AttachmentBytes *prometheus.CounterVec
}

// New returns the metrics of a server using pool.
func New(pool *pgxpool.Pool) *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "synkronus_http_request_duration_seconds",
			Help:    "Time from receiving a request to its answer, by the contract's operation id and the HTTP status.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"operation", "status"}),
		RecordsPushed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "synkronus_sync_records_pushed_total",
			Help: "Records pushes accepted (stored, or kept in the history as a conflict's losing side); replays not counted.",
		}),
		RecordsPulled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "synkronus_sync_records_pulled_total",
			Help: "Records sent in pull pages.",
		}),
		Conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "synkronus_sync_conflicts_total",
			Help: "Pushed records that conflicted with another copy (answered with a CONFLICT warning).",
		}),
		FailedRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "synkronus_sync_failed_records_total",
			Help: "Pushed records that could not be stored and were quarantined, by reason code.",
		}, []string{"code"}),
		ReplayedPushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "synkronus_sync_replayed_pushes_total",
			Help: "Pushes whose transmission was already stored, answered from the push receipt.",
		}),
		AttachmentBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "synkronus_attachment_bytes_total",
			Help: "Attachment bytes received in upload bodies (in) and sent in downloads (out).",
		}, []string{"direction"}),
	}
	m.registry.MustRegister(m.requests, m.RecordsPushed, m.RecordsPulled, m.Conflicts, m.FailedRecords,
		m.ReplayedPushes, m.AttachmentBytes, newDatabaseCollector(pool),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ObserveRequest records one answered request.
func (m *Metrics) ObserveRequest(operation string, status int, took time.Duration) {
	if operation == "" {
		operation = NoOperation
	}
	m.requests.WithLabelValues(operation, strconv.Itoa(status)).Observe(took.Seconds())
}

// Handler serves the metrics in the Prometheus text format. With a token, only requests
// bearing it (Authorization: Bearer <token>) are answered.
func (m *Metrics) Handler(token string) http.Handler {
	h := promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
	if token == "" {
		return h
	}
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="synkronus metrics"`)
			http.Error(w, "a bearer token is required", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// scrapeTimeout bounds the database queries of one scrape.
const scrapeTimeout = 3 * time.Second

// databaseCollector reports the connection pool's state and, read from PostgreSQL at
// each scrape, the age of the oldest open write transaction and the quarantine's size.
type databaseCollector struct {
	pool *pgxpool.Pool
	q    *dbgen.Queries

	acquired, idle, total, constructing, maxConns *prometheus.Desc
	acquires, emptyAcquires, canceledAcquires     *prometheus.Desc
	acquireSeconds                                *prometheus.Desc
	oldestWrite, quarantined, up                  *prometheus.Desc
}

func newDatabaseCollector(pool *pgxpool.Pool) *databaseCollector {
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	return &databaseCollector{
		pool:             pool,
		q:                dbgen.New(db.Conn(pool)),
		acquired:         d("synkronus_db_pool_acquired_connections", "Connections of this process's pool in use."),
		idle:             d("synkronus_db_pool_idle_connections", "Idle connections of this process's pool."),
		total:            d("synkronus_db_pool_connections", "Open connections of this process's pool."),
		constructing:     d("synkronus_db_pool_constructing_connections", "Connections of this process's pool being opened."),
		maxConns:         d("synkronus_db_pool_max_connections", "Size limit of this process's pool (DB_MAX_CONNS)."),
		acquires:         d("synkronus_db_pool_acquires_total", "Connections taken from the pool."),
		emptyAcquires:    d("synkronus_db_pool_empty_acquires_total", "Connections taken from the pool that had to wait for one (none idle)."),
		canceledAcquires: d("synkronus_db_pool_canceled_acquires_total", "Waits for a connection that ended because the request was cancelled."),
		acquireSeconds:   d("synkronus_db_pool_acquire_seconds_total", "Time spent taking connections from the pool, waits included."),
		oldestWrite: d("synkronus_db_oldest_write_age_seconds",
			"Age of the oldest open write transaction on the database (holding a transaction id, or waiting for a lock), over every process; 0 when none."),
		quarantined: d("synkronus_sync_quarantined_records", "Records waiting in the quarantine for an admin."),
		up:          d("synkronus_db_up", "1 when this scrape's database queries succeeded, 0 otherwise."),
	}
}

func (c *databaseCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.acquired, c.idle, c.total, c.constructing, c.maxConns, c.acquires,
		c.emptyAcquires, c.canceledAcquires, c.acquireSeconds, c.oldestWrite, c.quarantined, c.up} {
		ch <- d
	}
}

func (c *databaseCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.pool.Stat()
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge(c.acquired, float64(st.AcquiredConns()))
	gauge(c.idle, float64(st.IdleConns()))
	gauge(c.total, float64(st.TotalConns()))
	gauge(c.constructing, float64(st.ConstructingConns()))
	gauge(c.maxConns, float64(st.MaxConns()))
	counter(c.acquires, float64(st.AcquireCount()))
	counter(c.emptyAcquires, float64(st.EmptyAcquireCount()))
	counter(c.canceledAcquires, float64(st.CanceledAcquireCount()))
	counter(c.acquireSeconds, st.AcquireDuration().Seconds())

	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	age, err := c.q.DatabaseOldestWriteAge(ctx)
	var quarantined int64
	if err == nil {
		quarantined, err = c.q.QuarantinedRecordCount(ctx)
	}
	if err != nil {
		gauge(c.up, 0) // the other database figures are left out rather than made up
		return
	}
	gauge(c.oldestWrite, age)
	gauge(c.quarantined, float64(quarantined))
	gauge(c.up, 1)
}

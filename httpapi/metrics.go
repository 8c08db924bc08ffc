package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the API's own Prometheus series plus collectors that read
// the node's state at scrape time. Raft's internal metrics (commit and
// apply times, fsync/store times, elections, replication) reach the same
// registry through the go-metrics Prometheus sink cmd/raftkv installs.
type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	// aclDenied counts requests refused by the ACL rules, by reason.
	aclDenied *prometheus.CounterVec
}

func (a *API) registerMetrics(reg prometheus.Registerer) {
	a.metrics = &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftkv_http_requests_total",
			Help: "HTTP requests by route, method and status code.",
		}, []string{"route", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "raftkv_http_request_duration_seconds",
			Help:    "HTTP request latency by route and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method"}),
		aclDenied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftkv_acl_denied_total",
			Help: "Requests refused by the ACL rules, by reason (acl_not_found, read, write, management).",
		}, []string{"reason"}),
	}
	if a.cfg.ACL != nil {
		for _, reason := range aclDenyReasons {
			a.metrics.aclDenied.WithLabelValues(reason) // export zeros while ACLs are on
		}
	}
	n := a.node
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	reg.MustRegister(
		a.metrics.requests, a.metrics.latency, a.metrics.aclDenied,
		gauge("raftkv_raft_term", "Current Raft term.", func() float64 { return float64(n.Status().Term) }),
		gauge("raftkv_raft_is_leader", "1 when this node is the leader.", func() float64 {
			if n.Status().State == "Leader" {
				return 1
			}
			return 0
		}),
		gauge("raftkv_raft_commit_index", "Raft commit index.", func() float64 { return float64(n.Status().CommitIndex) }),
		gauge("raftkv_raft_applied_index", "Index applied to the state machine.", func() float64 { return float64(n.AppliedIndex()) }),
		gauge("raftkv_raft_last_contact_seconds", "Time since this node last heard from the leader (0 on the leader).", func() float64 {
			return n.LastContact().Seconds()
		}),
		gauge("raftkv_snapshots_taken", "Snapshots taken by this process.", func() float64 { return float64(n.Status().SnapshotsTaken) }),
		gauge("raftkv_snapshot_restores", "Snapshots restored into the state machine by this process.", func() float64 { return float64(n.Status().Restores) }),
		gauge("raftkv_fsm_keys", "Keys in the state machine.", func() float64 {
			st, err := n.Store().Stats()
			if err != nil {
				return 0
			}
			return float64(st.Keys)
		}),
		gauge("raftkv_fsm_size_bytes", "Size of the state machine's bbolt file.", func() float64 {
			st, err := n.Store().Stats()
			if err != nil {
				return 0
			}
			return float64(st.SizeBytes)
		}),
		gauge("raftkv_disk_free_bytes", "Free space of the data dir's filesystem (sampled every 500ms).", func() float64 {
			return float64(n.DiskStatus().FreeBytes)
		}),
		gauge("raftkv_disk_low", "1 while free disk space is below --min-free-disk and this node refuses writes.", func() float64 {
			if n.DiskStatus().Low {
				return 1
			}
			return 0
		}),
		&healthCollector{a: a},
	)
}

// instrument wraps the router to count and time every request by route
// template (not by key, so the series stay bounded).
func (a *API) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(sw, r)
		route := "other"
		if cr := mux.CurrentRoute(r); cr != nil {
			if t, err := cr.GetPathTemplate(); err == nil {
				route = t
			}
		}
		a.metrics.requests.WithLabelValues(route, r.Method, strconv.Itoa(sw.code)).Inc()
		a.metrics.latency.WithLabelValues(route, r.Method).Observe(time.Since(start).Seconds())
	})
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

// healthCollector exports the failure detector's per-server view (leader
// only; followers export nothing).
type healthCollector struct{ a *API }

var (
	descHealthy = prometheus.NewDesc("raftkv_server_healthy", "1 when the leader's failure detector sees the server healthy.", []string{"server"}, nil)
	descLag     = prometheus.NewDesc("raftkv_server_lag_entries", "Entries the server is behind the leader.", []string{"server"}, nil)
	descContact = prometheus.NewDesc("raftkv_server_last_contact_seconds", "The server's last contact with the leader.", []string{"server"}, nil)
	descTol     = prometheus.NewDesc("raftkv_failure_tolerance", "How many more voters may fail while a quorum remains.", nil, nil)
)

func (h *healthCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descHealthy
	ch <- descLag
	ch <- descContact
	ch <- descTol
}

func (h *healthCollector) Collect(ch chan<- prometheus.Metric) {
	hv, err := h.a.node.Health()
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(descTol, prometheus.GaugeValue, float64(hv.FailureTolerance))
	for _, s := range hv.Servers {
		v := 0.0
		if s.Healthy {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descHealthy, prometheus.GaugeValue, v, s.ID)
		ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(s.Lag), s.ID)
		ch <- prometheus.MustNewConstMetric(descContact, prometheus.GaugeValue, s.LastContact.Seconds(), s.ID)
	}
}

func metricsHandler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}

package main

import (
	"fmt"
	"time"

	gometrics "github.com/hashicorp/go-metrics"
	gmprom "github.com/hashicorp/go-metrics/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// newMetricsRegistry builds the registry served at /metrics: Go runtime and
// process metrics, and hashicorp/raft's and raft-boltdb's own metrics
// (raft_commitTime, raft_fsm_apply, raft_boltdb_storeLogs, raft_state_*,
// raft_replication_*, ...) through go-metrics' Prometheus sink. Both
// libraries report to this one sink because the binary is built with
// -tags hashicorpmetrics (see go.mod).
func newMetricsRegistry() (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	sink, err := gmprom.NewPrometheusSinkFrom(gmprom.PrometheusOpts{Registerer: reg, Expiration: 5 * time.Minute})
	if err != nil {
		return nil, fmt.Errorf("prometheus sink: %w", err)
	}
	mc := gometrics.DefaultConfig("raftkv")
	mc.EnableHostname = false
	mc.EnableHostnameLabel = false
	mc.EnableRuntimeMetrics = false // the Go collector covers them
	if _, err := gometrics.NewGlobal(mc, sink); err != nil {
		return nil, fmt.Errorf("install metrics sink: %w", err)
	}
	return reg, nil
}

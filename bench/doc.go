// Package bench measures a raftkv cluster from the outside, over the public HTTP API only.
//
// It owns three measurements:
//
//   - load: put, get (linearizable or stale), mixed and CAS workloads driven by a fixed number of
//     closed-loop clients over kept-alive HTTP connections, reported as throughput and latency
//     percentiles (HdrHistogram) with errors counted by kind;
//   - baselines taken in the same run, so the figures survive a noisy machine: the disk's
//     write+fdatasync rate on the data directory's filesystem and a loopback HTTP round-trip floor
//     measured with the same client setup against a trivial in-process server;
//   - failover and catch-up: the tool spawns its own cluster by re-executing its own binary as
//     `raftkv server`, SIGKILLs the leader (or stops a follower) under write load and times the
//     recovery.
//
// It deliberately imports no server package (fsm, cluster, httpapi): what it measures is what any
// client sees. Flags live in command.go; everything else takes a Config.
//
// The clients are closed-loop: each issues its next request when the previous one answers, so the
// latency figures are service times under that concurrency, not response times under a fixed
// offered rate (no coordinated-omission correction is needed or applied).
package bench

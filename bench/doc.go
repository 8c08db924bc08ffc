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
// Typical runs (see `raftkv bench CMD --help` for every flag):
//
//	raftkv bench put --spawn 3 -c 1,16,64 -d 10s       # start 3 nodes of this binary, load them
//	raftkv bench put --nodes 127.0.0.1:8501,127.0.0.1:8502,127.0.0.1:8503 -c 16
//	raftkv bench get -c 16,64                           # linearizable reads (the leader)
//	raftkv bench get --stale --target all -c 64         # stale reads spread over every node
//	raftkv bench get --target followers -c 64           # read-index reads served by followers
//	raftkv bench mixed --read-ratio 0.9 -c 32 -o json
//	raftkv bench cas --keys 100 -c 16
//	raftkv bench failover --spawn 3 --kills 10
//	raftkv bench catchup --writes 200000
//
// With --spawn the report also gives each node's CPU use and memory, and the node CPU time per
// request: on a machine shared with other work that cost moves far less than the throughput.
//
// It deliberately imports no server package (fsm, cluster, httpapi): what it measures is what any
// client sees. Flags live in command.go; everything else takes a Config.
//
// The clients are closed-loop: each issues its next request when the previous one answers, so the
// latency figures are service times under that concurrency, not response times under a fixed
// offered rate (no coordinated-omission correction is needed or applied).
package bench

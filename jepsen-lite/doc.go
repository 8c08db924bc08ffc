// Package jepsenlite is raftkv's own Jepsen: it starts a cluster of real raftkv
// processes (or targets one that is already running), drives it with concurrent
// clients while a nemesis injects faults, records every operation in a history,
// and checks that history.
//
// It owns: process control of the nodes (cluster.go), network namespaces and
// iptables partitions (netns.go) or, without root, proxies on every
// node-to-node link (proxy.go), the HTTP client that classifies outcomes
// (client.go), the history (history.go), the register and set workloads, the
// nemesis, the checkers (porcupine for linearizability, set membership, replica
// convergence) and the report.
//
// It deliberately does not import any of the server's packages: it sees the
// store exactly as a user's client does, over HTTP, plus signals and the
// network. A test (deps_test.go) keeps it that way.
//
// Outcomes follow Jepsen: ok (it happened), fail (the server proved it did not
// happen: a definite rejection, a CAS mismatch, a read that failed) and info
// (unknown: timeouts, resets after sending, the server's "outcome unknown").
// Unknown operations are never counted as ok or as fail; the checker treats
// them as open-ended, and the worker that saw one continues as a new process.
package jepsenlite

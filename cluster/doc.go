// Package cluster owns the Raft node of a raftkv server: hashicorp/raft setup
// (TCP transport, raft-boltdb log and stable store behind a log cache, file
// snapshot store), the raft.BatchingFSM adapter over the fsm package, writes
// with a classified outcome, reads at each consistency level, and membership
// (bootstrap, join, leave, remove).
//
// It is the only package in raftkv that imports hashicorp/raft; callers see
// plain Go types (Status, Server, errors from this package). It does not speak
// HTTP: forwarding a write or a read-index request to the leader over the
// network is the job of httpapi, which learns the leader's HTTP address from
// Leader().
//
// Concurrency: a Node is safe for concurrent use. It runs three goroutines,
// all owned by the Node and stopped by Close: the leadership watcher (runs the
// read barrier after each election), the read-index batcher (one leadership
// confirmation round for all reads waiting at once), and the observer loop
// (logs leadership and peer changes).
package cluster

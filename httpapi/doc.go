// Package httpapi serves raftkv's HTTP API (Consul's KV API plus status,
// operator and membership endpoints; see docs/api.md) on gorilla/mux.
//
// It owns request parsing and validation, the mapping of every error to a
// status code, a JSON message and an outcome (failed or unknown; errors.go is
// the one place that happens), and forwarding: a follower relays writes and
// membership requests to the leader and asks the leader for a read index,
// over HTTP. It holds no state of its own; the cluster package owns Raft and
// the state machine.
package httpapi

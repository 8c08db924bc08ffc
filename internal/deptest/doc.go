// Package deptest holds no code: its test keeps raftkv's import graph the
// shape the architecture promises.
//
// Imports point one way, cmd -> httpapi -> cluster -> fsm, and each layer
// owns one dependency: only cluster speaks Raft (github.com/hashicorp/raft),
// only httpapi speaks HTTP routing (gorilla/mux), fsm knows neither, the API's
// JSON shapes (httpapi/wire) are a standard-library-only leaf that any client
// can import, the Go client depends on nothing of the server but those
// shapes, and the jepsen-lite harness reaches the store only over HTTP, as a
// user would, importing no raftkv package at all.
//
// The compiler keeps none of this true: a convenient import in the wrong
// direction builds fine and quietly couples layers. The test in this
// package asks `go list` (with -tags hashicorpmetrics, as every build here
// uses) for each package's direct imports and its full dependency closure,
// and fails with the offending edge when a rule is broken. The idea is
// tailscale's tstest/deptest. Only non-test code is checked: a test may
// import whatever it needs to set up its fixtures.
//
// To change a rule, change the table in deptest_test.go and say why in the
// commit: the rules are the architecture, written down where CI reads them.
package deptest

package cluster

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestPeerChangedResetsHeartbeatFailure: raft's heartbeat goroutine for a
// server that was removed and re-added is a new one, which never reports
// "resumed" for the old one's failure; the configuration change must clear
// it, or the server stays unreachable (and a non-voter) for ever.
func TestPeerChangedResetsHeartbeatFailure(t *testing.T) {
	n := &Node{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	d := &detector{n: n, peers: map[raft.ServerID]*peerTrack{}}
	id := raft.ServerID("n2")
	d.track(id).ok = true // its stats fetch succeeds
	if !d.reachable(id) {
		t.Fatal("reachable false before any heartbeat failure")
	}
	d.heartbeatFailed(id, time.Time{})
	if d.reachable(id) {
		t.Fatal("reachable true while raft's heartbeats fail")
	}
	d.peerChanged(id) // removed and re-added: a new heartbeat goroutine
	if !d.reachable(id) {
		t.Error("reachable still false after raft restarted replication to the server")
	}
	d.peerChanged("unknown") // never seen: nothing to reset, no panic
}

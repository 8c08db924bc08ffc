package cluster

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"
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
	d.peerChanged(id, false) // removed and re-added: a new heartbeat goroutine
	if !d.reachable(id) {
		t.Error("reachable still false after raft restarted replication to the server")
	}
	d.peerChanged("unknown", true) // never seen: nothing to reset, no panic
}

// TestRemovedServerStabilizesAgain: a server removed from the configuration
// and re-added must be stable for the whole stabilization time again before
// the promoter may make it a voter; its StableSince starts at its return.
func TestRemovedServerStabilizesAgain(t *testing.T) {
	n := &Node{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	d := &detector{n: n, peers: map[raft.ServerID]*peerTrack{}, healthy: map[raft.ServerID]bool{}, since: map[raft.ServerID]time.Time{}}
	id := raft.ServerID("n2")
	state := func() *autopilot.State {
		return &autopilot.State{Servers: map[raft.ServerID]*autopilot.ServerState{
			id: {Health: autopilot.ServerHealth{Healthy: true}},
		}}
	}
	d.NotifyState(state())
	first := d.since[id]
	if first.IsZero() {
		t.Fatal("no StableSince recorded for a new server")
	}
	// Still healthy later: StableSince does not move.
	st := state()
	d.NotifyState(st)
	if got := st.Servers[id].Health.StableSince; !got.Equal(first) {
		t.Fatalf("StableSince moved from %v to %v while healthy", first, got)
	}
	d.peerChanged(id, true) // removed
	st = state()            // re-added, healthy at once
	d.NotifyState(st)
	if got := st.Servers[id].Health.StableSince; !got.After(first) {
		t.Fatalf("StableSince after removal and re-add = %v, want after the first sighting %v", got, first)
	}
}

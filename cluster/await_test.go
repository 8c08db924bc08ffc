package cluster

import (
	"log/slog"
	"testing"

	"github.com/hashicorp/raft"
)

// TestBindShutdownReachesRaftFutures guards await: if a hashicorp/raft
// upgrade drops the ShutdownCh field from the futures it hands out, futures
// abandoned at shutdown would block Close forever.
func TestBindShutdownReachesRaftFutures(t *testing.T) {
	conf := raft.DefaultConfig()
	conf.LocalID = "t"
	conf.Logger = newRaftLogger(discardLogger())
	_, trans := raft.NewInmemTransport("")
	store := raft.NewInmemStore()
	r, err := raft.NewRaft(conf, &raft.MockFSM{}, store, store, raft.NewInmemSnapshotStore(), trans)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Shutdown()
	// A follower with no leader: a queued apply is never resolved by raft.
	futures := map[string]raft.Future{
		"apply":  r.Apply([]byte("x"), 0),
		"verify": r.VerifyLeader(),
	}
	for name, f := range futures {
		ch := make(chan struct{})
		if !bindShutdown(f, ch) {
			t.Fatalf("%s future (%T): no settable ShutdownCh", name, f)
		}
		close(ch)
		done := make(chan error, 1)
		go func() { done <- f.Error() }()
		if err := <-done; err == nil {
			t.Fatalf("%s future: got nil error after shutdown", name)
		}
	}
	if bindShutdown(struct{}{}, make(chan struct{})) {
		t.Fatal("bindShutdown accepted a value with no ShutdownCh")
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

package cluster_test

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/internal/testcluster"
)

// Concurrent writers share entries, yet every write to one key gets its own,
// growing index and the last one by index is what the key holds: two writes
// to one key never share a batch.
func TestWriteBatcherCoalescesDistinctKeysOnly(t *testing.T) {
	c := testcluster.Start(t, 3)
	leader := c.WaitLeader(5 * time.Second)
	const writers, each, keys = 32, 20, 4
	type ack struct {
		key   string
		index uint64
		value string
	}
	acks := make(chan ack, writers*each)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				key := fmt.Sprintf("k%d", (w+i)%keys)
				val := fmt.Sprintf("%d-%d", w, i)
				res, err := leader.Node.Apply(ctxT(t, 10*time.Second), set(key, val))
				if err != nil || !res.OK {
					t.Errorf("write %s=%s: res=%+v err=%v", key, val, res, err)
					return
				}
				acks <- ack{key, res.Index, val}
			}
		})
	}
	wg.Wait()
	close(acks)
	last := map[string]ack{}
	seen := map[string]map[uint64]bool{}
	for a := range acks {
		if seen[a.key] == nil {
			seen[a.key] = map[uint64]bool{}
		}
		if seen[a.key][a.index] {
			t.Errorf("two writes to %s acknowledged at index %d", a.key, a.index)
		}
		seen[a.key][a.index] = true
		if a.index > last[a.key].index {
			last[a.key] = a
		}
	}
	for key, a := range last {
		e, ok, err := leader.Node.Store().Get(key)
		if err != nil || !ok || string(e.Value) != a.value || e.ModifyIndex != a.index {
			t.Errorf("%s: stored %+v (found %v, err %v), want %q at index %d", key, e, ok, err, a.value, a.index)
		}
	}
	entries, writes := leader.Node.WriteBatches()
	if writes != writers*each || entries >= writes {
		t.Errorf("batcher proposed %d entries for %d writes; want %d writes in fewer entries", entries, writes, writers*each)
	}
	t.Logf("%d writes in %d entries", writes, entries)
}

// Read-modify-CAS loops on one counter lose no increment: a CAS sees the
// effect of every write acknowledged before it, batched or not.
func TestWriteBatcherCASIncrements(t *testing.T) {
	c := testcluster.Start(t, 3)
	leader := c.WaitLeader(5 * time.Second)
	applyOnLeader(t, c, set("counter", "0"))
	applyOnLeader(t, c, set("noise", "0"))
	const workers, incs = 8, 15
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var noise sync.WaitGroup
	noise.Go(func() { // unrelated writes keep batches forming
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := leader.Node.Apply(ctxT(t, 10*time.Second), set(fmt.Sprintf("noise%d", i%8), "x")); err != nil {
				t.Errorf("noise write: %v", err)
				return
			}
		}
	})
	for range workers {
		wg.Go(func() {
			for done := 0; done < incs; {
				e, _, err := leader.Node.Store().Get("counter")
				if err != nil {
					t.Errorf("read counter: %v", err)
					return
				}
				n, _ := strconv.Atoi(string(e.Value))
				res, err := leader.Node.Apply(ctxT(t, 10*time.Second), fsm.Command{Op: fsm.OpCAS, Key: "counter", Value: []byte(strconv.Itoa(n + 1)), Index: e.ModifyIndex})
				if err != nil {
					t.Errorf("cas: %v", err)
					return
				}
				if res.OK {
					done++
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	noise.Wait()
	e, _, err := leader.Node.Store().Get("counter")
	if err != nil || string(e.Value) != strconv.Itoa(workers*incs) {
		t.Fatalf("counter = %q (err %v), want %d", e.Value, err, workers*incs)
	}
}

// In a running cluster with a long commit interval, a write is visible on
// a follower to a reader that waits for it well within the interval.
func TestDeferredCommitVisibleToReaders(t *testing.T) {
	c := testcluster.Start(t, 3, func(cfg *cluster.Config) { cfg.FSMCommitInterval = time.Second })
	c.WaitLeader(5 * time.Second)
	res := applyOnLeader(t, c, set("a", "1"))
	f := c.Follower()
	if err := f.Node.WaitApplied(ctxT(t, 5*time.Second), res.Index); err != nil {
		t.Fatalf("follower: %v", err)
	}
	if e, ok, err := f.Node.Store().Get("a"); err != nil || !ok || string(e.Value) != "1" {
		t.Fatalf("follower reads %+v (found %v, err %v)", e, ok, err)
	}
}

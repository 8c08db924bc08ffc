package httpapi

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestReadIndexBatcherSharesAndOrders: concurrent reads share requests, and
// no read uses a request that started before it arrived.
func TestReadIndexBatcherSharesAndOrders(t *testing.T) {
	var b readIndexBatcher
	var calls atomic.Int64
	var counter atomic.Uint64 // the "commit index": bumped when a fetch starts
	release := make(chan struct{})
	fetch := func(ctx context.Context) (uint64, error) {
		calls.Add(1)
		idx := counter.Add(1)
		<-release
		return idx, nil
	}
	// First read starts a request and blocks in it.
	first := make(chan uint64, 1)
	go func() { i, _ := b.get(context.Background(), fetch); first <- i }()
	waitFor(t, func() bool { return calls.Load() == 1 })

	// 50 reads arrive while it is in flight: they must share ONE later request.
	const n = 50
	var wg sync.WaitGroup
	got := make([]uint64, n)
	for i := 0; i < n; i++ {
		wg.Go(func() { got[i], _ = b.get(context.Background(), fetch) })
	}
	waitFor(t, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.next != nil && b.next.waiters == n
	})
	close(release)
	wg.Wait()
	if i := <-first; i != 1 {
		t.Fatalf("first read got index %d, want 1", i)
	}
	for i, g := range got {
		if g != 2 {
			t.Fatalf("read %d got index %d, want 2 (from a request started after it arrived)", i, g)
		}
	}
	if c := calls.Load(); c != 2 {
		t.Fatalf("%d read-index requests for %d reads, want 2", c, n+1)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

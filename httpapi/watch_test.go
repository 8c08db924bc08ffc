package httpapi_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/testcluster"
)

// Watch loops (blocking queries chained by index, as Consul clients and
// `raftkv kv watch` run them) on every node, while writers race on the
// watched prefix: each watcher sees values only move forward and always ends
// on the final value, however the writes and its wake-ups interleave.
func TestWatchLoopsConvergeUnderConcurrentWrites(t *testing.T) {
	c := testcluster.Start(t, 3)
	const writers, perWriter = 4, 40
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// final[w] is writer w's last value; a watcher is done when it has seen all.
	type seen map[string]int
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	watch := func(nd *testcluster.Node) {
		cl := client.New(nd.HTTPAddr, 30*time.Second)
		last := seen{}
		var index uint64
		for {
			// A wait longer than the deadline: a wake-up missed after the last
			// write would hang the watcher until the test fails.
			pairs, idx, err := cl.Watch(ctx, "race/", true, index, time.Minute)
			if err != nil && err != client.ErrNotFound {
				if ctx.Err() != nil {
					errs <- fmt.Errorf("watch on %s: %w", nd.ID, err)
					return
				}
				// An election under a loaded host: 503 for a moment.
				time.Sleep(50 * time.Millisecond) // retry pause, not a condition stand-in
				continue
			}
			if idx < index {
				errs <- fmt.Errorf("watch on %s: index went back from %d to %d", nd.ID, index, idx)
				return
			}
			index = idx
			done := 0
			for _, p := range pairs {
				v, _ := strconv.Atoi(string(p.Value))
				if v < last[p.Key] {
					errs <- fmt.Errorf("watch on %s: %s went back from %d to %d", nd.ID, p.Key, last[p.Key], v)
					return
				}
				last[p.Key] = v
				if v == perWriter {
					done++
				}
			}
			if done == writers {
				return
			}
		}
	}
	for i := range 6 {
		nd := c.Nodes[i%len(c.Nodes)]
		wg.Go(func() { watch(nd) })
	}
	for w := range writers {
		nd := c.Nodes[w%len(c.Nodes)]
		wg.Go(func() {
			cl := client.New(nd.HTTPAddr, 10*time.Second)
			for v := 1; v <= perWriter; {
				if _, _, err := cl.Put(ctx, fmt.Sprintf("race/w%d", w), []byte(strconv.Itoa(v)), client.PutOptions{}); err != nil {
					if ctx.Err() != nil {
						errs <- fmt.Errorf("writer %d: %w", w, err)
						return
					}
					// Leadership moved (a loaded host): setting the same
					// value again is safe whatever the outcome was.
					time.Sleep(50 * time.Millisecond) // retry pause
					continue
				}
				v++
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if ctx.Err() != nil {
		t.Fatal("watchers did not converge on the final values within the deadline")
	}
}

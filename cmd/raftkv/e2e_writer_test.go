package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
)

// steadyWriter keeps writing fresh keys through a set of nodes (one goroutine
// per node) and records every acknowledged write, so a test can check that
// acknowledged writes survive, and how long writes stalled.
type steadyWriter struct {
	prefix string
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	acked  map[string]string // key -> value of every acknowledged write
	okAt   []time.Time       // completion time of every acknowledged write
	failed int
	errs   map[string]int // failure kind -> count
}

// startWriter starts writing keys under prefix through nodes. It is stopped
// by stop or, at the latest, in t.Cleanup.
func startWriter(t *testing.T, prefix string, nodes []*e2eNode) *steadyWriter {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &steadyWriter{prefix: prefix, cancel: cancel, acked: map[string]string{}, errs: map[string]int{}}
	for i, n := range nodes {
		w.wg.Add(1)
		go func() { // stopped by w.stop
			defer w.wg.Done()
			cl := n.client(time.Second)
			for seq := 0; ctx.Err() == nil; seq++ {
				key := fmt.Sprintf("%s/%d/%06d", prefix, i, seq)
				val := strconv.Itoa(seq)
				rctx, rcancel := context.WithTimeout(ctx, time.Second)
				ok, _, err := cl.Put(rctx, key, []byte(val), client.PutOptions{})
				rcancel()
				w.mu.Lock()
				if err == nil && ok {
					w.acked[key] = val
					w.okAt = append(w.okAt, time.Now())
				} else if ctx.Err() == nil {
					w.failed++
					w.errs[failureKind(err)]++
				}
				w.mu.Unlock()
				if err != nil {
					// Back off a little so a dead node does not spin a core.
					select {
					case <-ctx.Done():
					case <-time.After(10 * time.Millisecond):
					}
				}
			}
		}()
	}
	t.Cleanup(w.stop)
	return w
}

func (w *steadyWriter) stop() {
	w.cancel()
	w.wg.Wait()
}

// failureKind classifies a failed write for the log: HTTP status and
// outcome, or a transport error.
func failureKind(err error) string {
	var ce *client.Error
	switch {
	case err == nil:
		return "answered false"
	case errors.As(err, &ce):
		return fmt.Sprintf("HTTP %d outcome %s", ce.Status, ce.Outcome)
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	default:
		return "transport error"
	}
}

// snapshot returns a copy of the acknowledged writes and the failure count.
func (w *steadyWriter) snapshot() (map[string]string, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]string, len(w.acked))
	for k, v := range w.acked {
		out[k] = v
	}
	return out, w.failed
}

// successesAfter counts acknowledged writes completed after t0.
func (w *steadyWriter) successesAfter(t0 time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, at := range w.okAt {
		if at.After(t0) {
			n++
		}
	}
	return n
}

// maxGap is the longest time without an acknowledged write in [from, to].
func (w *steadyWriter) maxGap(from, to time.Time) time.Duration {
	w.mu.Lock()
	times := append([]time.Time(nil), w.okAt...)
	w.mu.Unlock()
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	prev, gap := from, time.Duration(0)
	for _, at := range times {
		if at.Before(from) || at.After(to) {
			continue
		}
		gap = max(gap, at.Sub(prev))
		prev = at
	}
	return max(gap, to.Sub(prev))
}

// checkAcked fails t unless every write w acknowledged reads back (linearizably,
// through via) with its value.
func checkAcked(t *testing.T, w *steadyWriter, via *e2eNode) {
	t.Helper()
	acked, failed := w.snapshot()
	var pairs map[string]string
	waitFor(t, 10*time.Second, "a listing of "+w.prefix, func() error {
		ps, err := via.client(5*time.Second).List(context.Background(), w.prefix+"/", client.Default)
		if err != nil {
			return err
		}
		pairs = make(map[string]string, len(ps))
		for _, p := range ps {
			pairs[p.Key] = string(p.Value)
		}
		return nil
	})
	lost := 0
	for k, v := range acked {
		if got, ok := pairs[k]; !ok || got != v {
			lost++
			if lost <= 10 {
				t.Errorf("acknowledged write %s=%s: got %q (present %t), want %q", k, v, got, ok, v)
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d acknowledged writes lost", lost, len(acked))
	}
	w.mu.Lock()
	kinds := fmt.Sprint(w.errs)
	w.mu.Unlock()
	t.Logf("steady writer %s: %d writes acknowledged and all read back; %d attempts failed (allowed during failover): %s", w.prefix, len(acked), failed, kinds)
}

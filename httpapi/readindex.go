package httpapi

import (
	"context"
	"sync"
)

// readIndexBatcher lets concurrent linearizable reads on a follower share
// one read-index request to the leader, as the leader shares one
// leadership confirmation among its own reads. A read may only use an
// index fetched by a request that started after the read arrived, so reads
// that arrive while a request is in flight form the next batch, which the
// first of them starts as soon as the current one ends. No goroutine of its
// own: the callers take turns.
type readIndexBatcher struct {
	mu      sync.Mutex
	running *riBatch // the request in flight, if any
	next    *riBatch // reads waiting for the next request
}

type riBatch struct {
	done    chan struct{}
	started bool
	waiters int // reads sharing this request
	index   uint64
	err     error
}

func (b *readIndexBatcher) get(ctx context.Context, fetch func(context.Context) (uint64, error)) (uint64, error) {
	b.mu.Lock()
	bt := b.next
	if bt == nil {
		bt = &riBatch{done: make(chan struct{})}
		b.next = bt
	}
	bt.waiters++
	b.mu.Unlock()
	for {
		b.mu.Lock()
		if bt.started {
			b.mu.Unlock()
			break
		}
		if b.running == nil {
			b.running, b.next, bt.started = bt, nil, true
			b.mu.Unlock()
			// The batch outlives this caller's cancellation: others wait on it.
			idx, err := fetch(context.WithoutCancel(ctx))
			b.mu.Lock()
			bt.index, bt.err = idx, err
			b.running = nil
			close(bt.done)
			b.mu.Unlock()
			return idx, err
		}
		cur := b.running
		b.mu.Unlock()
		select {
		case <-cur.done:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	select {
	case <-bt.done:
		return bt.index, bt.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

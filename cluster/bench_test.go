package cluster_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/internal/testcluster"
)

// The read and write paths on a real 3-node in-process cluster (real Raft
// over loopback TCP, real bbolt files). Run with -cpu to vary parallelism;
// compare runs with benchstat. Figures depend on the disk's fsync cost, so
// compare against BenchmarkApplyBatch in fsm from the same run.

func BenchmarkLinearizableRead(b *testing.B) {
	c := testcluster.Start(b, 3)
	l := c.WaitLeader(5 * time.Second)
	if _, err := l.Node.Apply(context.Background(), fsm.Command{Op: fsm.OpSet, Key: "k", Value: []byte("v")}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if _, err := l.Node.LinearizableBarrier(ctx); err != nil {
				b.Error(err)
				return
			}
			if _, _, err := l.Node.Store().Get("k"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkStaleRead(b *testing.B) {
	c := testcluster.Start(b, 1)
	l := c.WaitLeader(5 * time.Second)
	if _, err := l.Node.Apply(context.Background(), fsm.Command{Op: fsm.OpSet, Key: "k", Value: []byte("v")}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := l.Node.Store().Get("k"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkApply(b *testing.B) {
	c := testcluster.Start(b, 3)
	l := c.WaitLeader(5 * time.Second)
	var n atomic.Int64
	b.SetParallelism(16) // 16 proposers per GOMAXPROCS: exercises group commit
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		val := make([]byte, 100)
		for pb.Next() {
			k := fmt.Sprintf("key-%012d", n.Add(1))
			if _, err := l.Node.Apply(ctx, fsm.Command{Op: fsm.OpSet, Key: k, Value: val}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

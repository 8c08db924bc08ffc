package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/httpapi/wire"
)

// snapshotRoundTripKeys is how many keys the backup round trip carries: 1M
// (16-byte keys, 100-byte values) by default, RAFTKV_SNAPSHOT_KEYS to change.
func snapshotRoundTripKeys(t *testing.T) int {
	if v := os.Getenv("RAFTKV_SNAPSHOT_KEYS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("RAFTKV_SNAPSHOT_KEYS=%q: want a positive number", v)
		}
		return n
	}
	return 1_000_000
}

// loadKeys writes n keys through transactions of 64 sets, from 8 clients.
func loadKeys(t *testing.T, addr string, n int) {
	t.Helper()
	const perTxn, workers = 64, 8
	value := make([]byte, 100)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	start := time.Now()
	for range workers {
		wg.Go(func() {
			c := client.New(addr, 30*time.Second)
			for {
				first := int(next.Add(perTxn)) - perTxn
				if first >= n {
					return
				}
				ops := make([]wire.TxnKVOp, 0, perTxn)
				for k := first; k < min(first+perTxn, n); k++ {
					ops = append(ops, wire.TxnKVOp{Verb: "set", Key: fmt.Sprintf("snap/%011d", k), Value: value})
				}
				if _, err := c.Txn(context.Background(), ops); err != nil {
					errs <- fmt.Errorf("load keys %d..: %w", first, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("loaded %d keys in %s", n, time.Since(start).Round(time.Millisecond))
}

func digestOf(t *testing.T, n *e2eNode) wire.Digest {
	t.Helper()
	d, err := n.client(60 * time.Second).Digest(context.Background())
	if err != nil {
		t.Fatalf("digest of %s: %v", n.id, err)
	}
	return d
}

// Backup and restore of a million keys, into a different cluster: raftkv
// snapshot save from a live cluster, inspect, restore into a new 3-node
// cluster, and every node there holds exactly the same data, while the new
// cluster keeps its own node addresses (writes through a follower still
// reach its leader).
func TestSnapshotRoundTripMillionKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 1M keys; skipped in -short")
	}
	keys := snapshotRoundTripKeys(t)
	src := startCluster(t, 1)
	srcNode := src.nodes[0]
	loadKeys(t, srcNode.httpAddr, keys)
	want := digestOf(t, srcNode)
	if want.Keys != keys {
		t.Fatalf("source has %d keys, want %d", want.Keys, keys)
	}

	file := filepath.Join(t.TempDir(), "backup.snap")
	start := time.Now()
	res := runCLI(t, "snapshot", "save", file, "--http-addr", srcNode.httpAddr, "-o", "json")
	if res.code != 0 {
		t.Fatalf("snapshot save: exit %d: %s", res.code, res.stderr)
	}
	saveTook := time.Since(start)
	var saved struct{ Keys int }
	if err := json.Unmarshal([]byte(res.stdout), &saved); err != nil || saved.Keys != keys {
		t.Fatalf("snapshot save output %q (%v): want %d keys", res.stdout, err, keys)
	}
	res = runCLI(t, "snapshot", "inspect", file, "-o", "json")
	var info struct{ Keys int }
	if res.code != 0 || json.Unmarshal([]byte(res.stdout), &info) != nil || info.Keys != keys {
		t.Fatalf("snapshot inspect: exit %d, %q", res.code, res.stdout)
	}
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}

	dst := startCluster(t, 3)
	leader := dst.leader(t, dst.nodes, 10*time.Second)
	put(t, leader, "snap/overwritten", "by the restore", 10*time.Second)
	start = time.Now()
	res = runCLI(t, "snapshot", "restore", file, "--http-addr", dst.others(leader)[0].httpAddr)
	if res.code != 0 {
		t.Fatalf("snapshot restore: exit %d: %s", res.code, res.stderr)
	}
	restoreTook := time.Since(start)
	for _, n := range dst.nodes {
		waitFor(t, 60*time.Second, n.id+" holds the restored data", func() error {
			d, err := n.client(60 * time.Second).Digest(context.Background())
			if err != nil {
				return err
			}
			if d.KVDigest != want.KVDigest || d.Keys != keys {
				return fmt.Errorf("%s: %d keys, kv digest %.12s; want %d keys, %.12s", n.id, d.Keys, d.KVDigest, keys, want.KVDigest)
			}
			return nil
		})
	}
	// The new cluster's own addresses survived the restore: a write through
	// a follower is forwarded to this cluster's leader.
	follower := dst.others(dst.leader(t, dst.nodes, 10*time.Second))[0]
	put(t, follower, "after-restore", "ok", 10*time.Second)
	for _, n := range dst.nodes {
		waitFor(t, 10*time.Second, "the post-restore write everywhere", func() error {
			p, err := n.client(5*time.Second).Get(context.Background(), "after-restore", client.Stale)
			if err != nil || string(p.Value) != "ok" {
				return fmt.Errorf("%s: %q, %v", n.id, p.Value, err)
			}
			return nil
		})
	}
	t.Logf("%d keys, %d MiB snapshot: save %s, restore into a 3-node cluster %s (until the CLI returned)",
		keys, st.Size()>>20, saveTook.Round(time.Millisecond), restoreTook.Round(time.Millisecond))
}

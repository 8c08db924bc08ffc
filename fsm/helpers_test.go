package fsm

import (
	"crypto/sha256"
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

var seedFlag = flag.Uint64("seed", 0, "seed for randomised tests (0 = from the clock)")

// testRand returns a generator for a randomised test and logs its seed; rerun a failure with
// go test ./fsm -run <Test> -args -seed=<seed>.
func testRand(t testing.TB) *rand.Rand {
	t.Helper()
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d", seed)
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

func openTestStore(t testing.TB) *Store {
	t.Helper()
	return openTestStoreAt(t, filepath.Join(t.TempDir(), "fsm.db"))
}

func openTestStoreAt(t testing.TB, path string) *Store {
	t.Helper()
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// logsFrom turns commands into logs with consecutive indexes starting at first.
func logsFrom(first uint64, cmds ...Command) []Log {
	logs := make([]Log, len(cmds))
	for i, c := range cmds {
		logs[i] = Log{Index: first + uint64(i), Data: c.Encode()}
	}
	return logs
}

func mustApply(t testing.TB, s *Store, logs ...Log) []Result {
	t.Helper()
	res, err := s.ApplyBatch(logs)
	if err != nil {
		t.Fatalf("ApplyBatch: %v", err)
	}
	if len(res) != len(logs) {
		t.Fatalf("ApplyBatch returned %d results, want %d", len(res), len(logs))
	}
	return res
}

func mustDigest(t testing.TB, s *Store) Digest {
	t.Helper()
	d, err := s.Digest()
	if err != nil {
		t.Fatalf("Digest: %v", err)
	}
	return d
}

func mustList(t testing.TB, s *Store, prefix string) []Entry {
	t.Helper()
	es, err := s.List(prefix)
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return es
}

func mustGet(t testing.TB, s *Store, key string) (Entry, bool) {
	t.Helper()
	e, ok, err := s.Get(key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return e, ok
}

func set(key, value string) Command { return Command{Op: OpSet, Key: key, Value: []byte(value)} }

// randomCommand returns a command over a small key space, so that CAS/CAD and prefixes hit.
func randomCommand(r *rand.Rand) Command {
	key := fmt.Sprintf("k/%d/%d", r.IntN(4), r.IntN(16))
	switch n := r.IntN(20); {
	case n < 10:
		v := make([]byte, r.IntN(64))
		for i := range v {
			v[i] = byte(r.Uint32())
		}
		return Command{Op: OpSet, Key: key, Value: v, Flags: r.Uint64N(3)}
	case n < 13:
		return Command{Op: OpDelete, Key: key}
	case n < 15:
		return Command{Op: OpCAS, Key: key, Value: []byte("cas"), Index: r.Uint64N(40)}
	case n < 17:
		return Command{Op: OpCAD, Key: key, Index: r.Uint64N(40)}
	case n < 18:
		return Command{Op: OpDeletePrefix, Key: fmt.Sprintf("k/%d/", r.IntN(4))}
	case n < 19:
		return Command{Op: OpSetMeta, Key: fmt.Sprintf("node/%d", r.IntN(3)), Value: []byte(key)}
	default:
		return Command{Op: OpNoop}
	}
}

// randomBatches splits n random commands starting at index first into batches of random sizes.
func randomBatches(r *rand.Rand, first uint64, n int) [][]Log {
	var batches [][]Log
	for idx := first; idx < first+uint64(n); {
		size := min(1+r.IntN(32), int(first+uint64(n)-idx))
		batch := make([]Log, size)
		for i := range batch {
			if r.IntN(25) == 0 {
				batch[i] = Log{Index: idx, NoOp: true}
			} else {
				batch[i] = Log{Index: idx, Data: randomCommand(r).Encode()}
			}
			idx++
		}
		batches = append(batches, batch)
	}
	return batches
}

func entriesEqual(a, b []Entry) bool {
	return slices.EqualFunc(a, b, func(x, y Entry) bool {
		return x.Key == y.Key && string(x.Value) == string(y.Value) && x.Flags == y.Flags &&
			x.CreateIndex == y.CreateIndex && x.ModifyIndex == y.ModifyIndex
	})
}

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func sha(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// emptyBolt returns the bytes of a valid bbolt file with no buckets.
func emptyBolt(t testing.TB) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "empty.db")
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

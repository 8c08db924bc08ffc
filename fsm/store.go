package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
)

// Bucket and key names: see the storage layout in doc.go.
var (
	bucketKV        = []byte("kv")
	bucketMeta      = []byte("meta")
	bucketSys       = []byte("sys")
	keyAppliedIndex = []byte("applied_index")

	allBuckets = [][]byte{bucketKV, bucketMeta, bucketSys}
)

const (
	defaultInitialMmapSize = 1 << 30
	defaultTimeout         = time.Second
)

// Options configure Open. The zero value is ready to use.
type Options struct {
	// Logger receives the store's few log lines (open, restore, undecodable log entries).
	// nil = discard.
	Logger *slog.Logger
	// InitialMmapSize is bbolt's initial mmap size in bytes. 0 = 1 GiB. It is virtual memory: a large
	// value avoids remaps, and with them the wait of a writer for a long snapshot read transaction.
	InitialMmapSize int
	// Timeout is how long Open waits for bbolt's file lock (held by another process using the same
	// file). 0 = 1s.
	Timeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.InitialMmapSize == 0 {
		o.InitialMmapSize = defaultInitialMmapSize
	}
	if o.Timeout == 0 {
		o.Timeout = defaultTimeout
	}
	return o
}

func (o Options) bolt() *bbolt.Options {
	return &bbolt.Options{
		Timeout:         o.Timeout,
		FreelistType:    bbolt.FreelistMapType,
		NoFreelistSync:  true,
		InitialMmapSize: o.InitialMmapSize,
		// NoSync stays false: the applied index must never be durable ahead of the data it covers.
	}
}

// Store is the state machine: one bbolt file. Its methods are safe for concurrent use.
type Store struct {
	path string
	opts Options
	log  *slog.Logger

	restoreMu sync.Mutex // serialises Restore

	// mu guards db. Every transaction runs under mu.RLock; Restore and Close take mu.Lock to swap or
	// close db, so no reader ever sees a closed *bbolt.DB.
	mu sync.RWMutex
	db *bbolt.DB // nil once closed

	applied atomic.Uint64 // in-memory copy of sys/applied_index, updated after each commit

	// wmu guards pend, the write transaction ApplyPending fills and Commit ends (apply.go), and failed.
	// Lock order: mu before wmu. Every other writer, and every reader while hasPending, commits pend
	// first, under both: a read sees every applied entry.
	wmu        sync.Mutex
	pend       *pendingTx
	hasPending atomic.Bool // pend != nil, or a commit failed (readers then report failed)
	failed     error       // sticky: a pending transaction was lost; the store cannot follow the log
	onCommit   func(applied uint64)
}

// SetCommitHook sets fn to be called with the applied index after every commit of applied entries,
// with the store's locks held: fn must not call the store. Set it before the first apply.
func (s *Store) SetCommitHook(fn func(applied uint64)) { s.onCommit = fn }

// Open opens (creating if needed) the store at path. It removes temporary files left behind by a
// Restore interrupted by a crash.
func Open(path string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	s := &Store{path: path, opts: opts, log: opts.Logger}
	s.removeStaleTemps()
	db, idx, err := openDB(path, opts)
	if err != nil {
		return nil, err
	}
	s.db = db
	s.applied.Store(idx)
	s.log.Info("fsm opened", "path", path, "applied_index", idx)
	return s, nil
}

// openDB opens the bbolt file, creates the buckets if they are missing and reads the applied index.
func openDB(path string, opts Options) (*bbolt.DB, uint64, error) {
	db, err := bbolt.Open(path, 0o600, opts.bolt())
	if err != nil {
		return nil, 0, fmt.Errorf("open fsm db %s: %w", path, err)
	}
	var idx uint64
	missing := false
	err = db.View(func(tx *bbolt.Tx) error {
		for _, name := range allBuckets {
			if tx.Bucket(name) == nil {
				missing = true
				return nil
			}
		}
		var err error
		idx, err = readApplied(tx)
		return err
	})
	if err == nil && missing {
		// Only a new file gets a write here: reopening an existing store commits nothing.
		err = db.Update(func(tx *bbolt.Tx) error {
			for _, name := range allBuckets {
				if _, err := tx.CreateBucketIfNotExists(name); err != nil {
					return fmt.Errorf("create bucket %s: %w", name, err)
				}
			}
			var err error
			idx, err = readApplied(tx)
			return err
		})
	}
	if err != nil {
		_ = db.Close()
		return nil, 0, fmt.Errorf("open fsm db %s: %w", path, err)
	}
	return db, idx, nil
}

// removeStaleTemps removes restore temp files (see Restore) that a crash left next to the db.
func (s *Store) removeStaleTemps() {
	matches, err := filepath.Glob(s.path + restoreTempPattern)
	if err != nil {
		return
	}
	for _, m := range matches {
		if err := os.Remove(m); err != nil {
			s.log.Warn("remove stale restore file", "path", m, "err", err)
			continue
		}
		s.log.Info("removed stale restore file", "path", m)
	}
}

// Close closes the store. It waits for running operations and outstanding Snapshots. Closing twice
// is a no-op.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return nil
	}
	s.wmu.Lock()
	_, cerr := s.commitLocked()
	s.wmu.Unlock()
	if cerr != nil {
		// The entries are applied again from the log at the next start.
		cerr = fmt.Errorf("close fsm db: commit pending entries: %w", cerr)
	}
	err := s.db.Close()
	s.db = nil
	if err != nil {
		err = fmt.Errorf("close fsm db: %w", err)
	}
	return errors.Join(cerr, err)
}

// Path returns the path of the bbolt file.
func (s *Store) Path() string { return s.path }

// AppliedIndex returns the index of the last applied log entry as persisted (0 for a new store). It
// reads an in-memory copy and never blocks.
func (s *Store) AppliedIndex() uint64 { return s.applied.Load() }

// setAppliedAtLeast raises the in-memory applied index to idx (concurrent ApplyBatch calls commit in
// order but may reach this point out of order).
func (s *Store) setAppliedAtLeast(idx uint64) {
	for {
		cur := s.applied.Load()
		if idx <= cur || s.applied.CompareAndSwap(cur, idx) {
			return
		}
	}
}

// view runs fn in a read transaction on the current db, after committing pending entries so that it
// sees everything applied.
func (s *Store) view(fn func(tx *bbolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return ErrClosed
	}
	if s.hasPending.Load() {
		s.wmu.Lock()
		_, err := s.commitLocked()
		s.wmu.Unlock()
		if err != nil {
			return err
		}
	}
	return s.db.View(fn)
}

// readApplied reads sys/applied_index (0 when absent).
func readApplied(tx *bbolt.Tx) (uint64, error) {
	b := tx.Bucket(bucketSys)
	if b == nil {
		return 0, fmt.Errorf("read applied index: %w: bucket %s missing", ErrCorrupt, bucketSys)
	}
	v := b.Get(keyAppliedIndex)
	if v == nil {
		return 0, nil
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("read applied index: %w: %d bytes, want 8", ErrCorrupt, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

func putApplied(tx *bbolt.Tx, idx uint64) error {
	if err := tx.Bucket(bucketSys).Put(keyAppliedIndex, binary.BigEndian.AppendUint64(nil, idx)); err != nil {
		return fmt.Errorf("store applied index: %w", err)
	}
	return nil
}

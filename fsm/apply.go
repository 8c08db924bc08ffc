package fsm

import (
	"bytes"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/bbolt"
)

// Log is one committed Raft log entry handed to ApplyBatch.
type Log struct {
	Index uint64
	Data  []byte // an encoded Command
	// NoOp is true for entries that change no state (e.g. Raft configuration entries): they only
	// advance the applied index. Data is ignored.
	NoOp bool
}

// Result is the outcome of one Log in ApplyBatch.
type Result struct {
	Index uint64 // the log index
	// OK is true for set/delete/delete-prefix/noop/meta; for CAS/CAD, whether it took effect.
	OK bool
	// Skipped: Index <= the applied index at the time, so the entry was applied before (a replay after
	// a restart); nothing was done.
	Skipped bool
	// Txn is the outcome of an OpTxn entry (OK is false when it failed).
	Txn *TxnResult
	// Batch is the outcome of an OpBatch entry: per command, whether it took effect (OK is true).
	Batch []bool
	// Err: the entry could not be decoded or is invalid (wraps ErrBadCommand). The state is unchanged
	// for it but the applied index still advances past it, as on every other node.
	Err error
}

// ApplyBatch applies logs, in order, and commits: ApplyPending, then Commit. Entries with an Index at
// or below the applied index are skipped. It returns one Result per log.
//
// A returned error means the transaction failed and nothing since the last commit was applied; the
// caller cannot continue (the Raft FSM contract has no way to retry), so it should stop the node.
func (s *Store) ApplyBatch(logs []Log) ([]Result, error) {
	results, err := s.ApplyPending(logs)
	if err != nil {
		return nil, err
	}
	if _, err := s.Commit(); err != nil {
		return nil, err
	}
	return results, nil
}

// pendingTx is the open write transaction that ApplyPending fills and Commit ends.
type pendingTx struct {
	tx      *bbolt.Tx
	since   time.Time // when it was opened
	applied uint64    // sys/applied_index inside tx
	bytes   int       // encoded size of the log entries applied in it
}

// MaxPendingBytes bounds the log data one pending transaction holds: ApplyPending commits when a
// batch takes it past this, so the transaction's dirty pages stay small.
const MaxPendingBytes = 8 << 20

// ApplyPending applies logs, in order, in the store's pending write transaction (opening one if there
// is none), and records the new applied index (the largest Index in the batch, NoOp entries included)
// in the same transaction. Nothing is durable until Commit, and AppliedIndex stays at the last commit;
// a read through the store commits first (see view), so reads see everything applied. A crash loses
// what is pending, which the caller must be able to apply again (a Raft node replays its log from the
// durable applied index). Past MaxPendingBytes of log data it commits by itself.
//
// An error means the pending transaction failed and was rolled back: nothing since the last commit was
// applied, and the store refuses all further work (see commitLocked).
func (s *Store) ApplyPending(logs []Log) ([]Result, error) {
	if len(logs) == 0 {
		return nil, nil
	}
	results := make([]Result, len(logs))
	s.mu.RLock()
	defer s.mu.RUnlock()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.failed != nil {
		return nil, s.failed
	}
	if s.pend == nil && s.allApplied(logs) {
		// Pure replay: no transaction, no fsync.
		for i, l := range logs {
			results[i] = Result{Index: l.Index, Skipped: true}
		}
		return results, nil
	}
	if s.db == nil {
		return nil, fmt.Errorf("apply batch: %w", ErrClosed)
	}
	if s.pend == nil {
		tx, err := s.db.Begin(true)
		if err != nil {
			return nil, fmt.Errorf("apply batch: begin: %w", err)
		}
		// The persisted index, not the in-memory copy, is authoritative inside the write transaction.
		applied, err := readApplied(tx)
		if err != nil {
			_ = tx.Rollback()
			return nil, fmt.Errorf("apply batch: %w", err)
		}
		s.pend = &pendingTx{tx: tx, since: time.Now(), applied: applied}
		s.hasPending.Store(true)
	}
	p := s.pend
	applied := p.applied
	w := writer{kv: p.tx.Bucket(bucketKV), meta: p.tx.Bucket(bucketMeta)}
	err := func() error {
		for i, l := range logs {
			r := Result{Index: l.Index}
			switch {
			case l.Index <= applied:
				r.Skipped = true
			case l.NoOp:
				r.OK = true
			default:
				cmd, err := decodeCommand(l.Data, false)
				if err == nil {
					err = cmd.Validate()
				}
				if err != nil {
					r.Err = fmt.Errorf("log %d: %w", l.Index, err)
					break
				}
				switch cmd.Op {
				case OpTxn:
					r.Txn, err = w.txn(l.Index, cmd)
					r.OK = r.Txn != nil && len(r.Txn.Errors) == 0
				case OpBatch:
					r.Batch, err = w.batch(l.Index, cmd)
					r.OK = err == nil
				default:
					r.OK, err = w.apply(l.Index, cmd)
				}
				if err != nil {
					return fmt.Errorf("log %d (%s %q): %w", l.Index, cmd.Op, cmd.Key, err)
				}
			}
			if !r.Skipped {
				applied = l.Index
			}
			results[i] = r
		}
		if applied == p.applied {
			return nil
		}
		return putApplied(p.tx, applied)
	}()
	if err != nil {
		// Earlier batches in the transaction were acknowledged: losing them is fatal.
		_ = p.tx.Rollback()
		s.pend = nil
		s.failed = fmt.Errorf("apply batch: %w", err)
		return nil, s.failed
	}
	p.applied = applied
	for _, l := range logs {
		p.bytes += len(l.Data)
	}
	for _, r := range results {
		if r.Err != nil {
			s.log.Warn("log entry not applied", "index", r.Index, "err", r.Err)
		}
	}
	if p.bytes >= MaxPendingBytes {
		if _, err := s.commitLocked(); err != nil {
			return nil, err
		}
	}
	return results, nil
}

// Commit commits the pending write transaction, if there is one, making it durable and visible, and
// returns the applied index. An error means the pending entries were lost (rolled back); the caller
// must stop the node, as for an ApplyPending error.
func (s *Store) Commit() (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.commitLocked()
}

// commitLocked is Commit; the caller holds mu (read or write) and wmu. A failed commit is sticky: the
// entries in it were acknowledged, so the store can no longer follow the log and every later apply,
// commit and read reports it.
func (s *Store) commitLocked() (uint64, error) {
	if s.failed != nil {
		return 0, s.failed
	}
	p := s.pend
	if p == nil {
		return s.applied.Load(), nil
	}
	s.pend = nil
	if err := p.tx.Commit(); err != nil {
		s.failed = fmt.Errorf("commit applied entries up to index %d: %w", p.applied, err)
		return 0, s.failed
	}
	s.hasPending.Store(false)
	s.setAppliedAtLeast(p.applied)
	if s.onCommit != nil {
		s.onCommit(p.applied)
	}
	return p.applied, nil
}

// Pending describes the pending write transaction: the applied index inside it, when it was opened and
// the size of the log entries applied in it. ok is false when there is none.
func (s *Store) Pending() (applied uint64, since time.Time, bytes int, ok bool) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.pend == nil {
		return 0, time.Time{}, 0, false
	}
	return s.pend.applied, s.pend.since, s.pend.bytes, true
}

func (s *Store) allApplied(logs []Log) bool {
	applied := s.applied.Load()
	for _, l := range logs {
		if l.Index > applied {
			return false
		}
	}
	return true
}

// writer applies commands inside one write transaction.
type writer struct {
	kv, meta *bbolt.Bucket
}

// apply applies one valid command at log index idx. An error is a bbolt failure that aborts the
// transaction; a CAS/CAD mismatch is ok=false.
func (w writer) apply(idx uint64, c Command) (ok bool, err error) {
	key := []byte(c.Key) // a fresh copy: bbolt keeps Put keys until commit
	switch c.Op {
	case OpSet:
		cur, exists, err := w.current(key)
		if err != nil {
			return false, err
		}
		return true, w.put(key, c, idx, cur, exists)
	case OpCAS:
		cur, exists, err := w.current(key)
		if err != nil {
			return false, err
		}
		if c.Index == 0 && exists || c.Index != 0 && (!exists || cur.ModifyIndex != c.Index) {
			return false, nil
		}
		return true, w.put(key, c, idx, cur, exists)
	case OpDelete:
		return true, w.kv.Delete(key)
	case OpCAD:
		cur, exists, err := w.current(key)
		if err != nil {
			return false, err
		}
		if !exists || c.Index == 0 || cur.ModifyIndex != c.Index {
			return false, nil
		}
		return true, w.kv.Delete(key)
	case OpDeletePrefix:
		return true, w.deletePrefix(key)
	case OpNoop:
		return true, nil
	case OpSetMeta:
		return true, w.meta.Put(key, slices.Clone(c.Value))
	case OpDeleteMeta:
		return true, w.meta.Delete(key)
	}
	// Unreachable: Validate rejects unknown ops.
	return false, fmt.Errorf("%w: unknown op %d", ErrBadCommand, uint8(c.Op))
}

// txn applies a validated OpTxn command.
func (w writer) txn(idx uint64, c Command) (*TxnResult, error) {
	ops, err := DecodeTxn(c.Value)
	if err != nil { // unreachable: Validate decoded it already
		return nil, err
	}
	res, err := w.applyTxn(idx, ops)
	if err != nil {
		return nil, err
	}
	return &res, nil
}

func (w writer) current(key []byte) (Entry, bool, error) {
	v := w.kv.Get(key)
	if v == nil {
		return Entry{}, false, nil
	}
	e, _, err := parseEntry(key, v)
	return e, err == nil, err
}

func (w writer) put(key []byte, c Command, idx uint64, cur Entry, exists bool) error {
	e := Entry{Value: c.Value, Flags: c.Flags, CreateIndex: idx, ModifyIndex: idx}
	if exists {
		e.CreateIndex = cur.CreateIndex
	}
	return w.kv.Put(key, encodeEntry(e))
}

// deletePrefix deletes every key starting with prefix. Keys are collected first: deleting through a
// bbolt cursor while iterating skips keys.
func (w writer) deletePrefix(prefix []byte) error {
	var keys [][]byte
	c := w.kv.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, slices.Clone(k))
	}
	for _, k := range keys {
		if err := w.kv.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

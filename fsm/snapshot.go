package fsm

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"sync"

	"go.etcd.io/bbolt"
)

// Snapshot stream framing: see doc.go.
const (
	snapshotHeaderSize  = 16
	snapshotTrailerSize = sha256.Size
)

var snapshotMagic = [8]byte{'r', 'k', 'v', 's', 'n', 'a', 'p', 1}

// Snapshot is a point-in-time view of the whole store, held open by a bbolt read transaction. Writes
// continue while it is held (bbolt never reuses pages a reader can see), but Restore and Close wait
// for it to be released.
//
// WriteTo and Release must not be called concurrently with each other.
type Snapshot struct {
	tx    *bbolt.Tx
	index uint64

	releaseOnce sync.Once
	released    bool
}

// Snapshot captures the current state. It only opens a read transaction, so it is cheap enough for
// Raft's FSM goroutine; the copy happens later in WriteTo, typically on another goroutine. The caller
// must call Release.
func (s *Store) Snapshot() (*Snapshot, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return nil, fmt.Errorf("snapshot: %w", ErrClosed)
	}
	// A snapshot stands for everything applied so far, pending entries included.
	s.wmu.Lock()
	_, err := s.commitLocked()
	s.wmu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	tx, err := s.db.Begin(false)
	if err != nil {
		return nil, fmt.Errorf("snapshot: begin read tx: %w", err)
	}
	idx, err := readApplied(tx)
	if err != nil {
		_ = tx.Rollback()
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	return &Snapshot{tx: tx, index: idx}, nil
}

// Index returns the applied index the snapshot reflects.
func (sn *Snapshot) Index() uint64 { return sn.index }

// WriteTo writes the snapshot stream (the framed bbolt image, see doc.go) to w and returns the number
// of bytes written.
func (sn *Snapshot) WriteTo(w io.Writer) (int64, error) {
	if sn.released {
		return 0, fmt.Errorf("write snapshot: %w", ErrSnapshotReleased)
	}
	size := sn.tx.Size()
	var hdr [snapshotHeaderSize]byte
	copy(hdr[:], snapshotMagic[:])
	binary.BigEndian.PutUint64(hdr[8:], uint64(size))

	cw := &countingWriter{w: w}
	if _, err := cw.Write(hdr[:]); err != nil {
		return cw.n, fmt.Errorf("write snapshot header: %w", err)
	}
	h := sha256.New()
	n, err := sn.tx.WriteTo(io.MultiWriter(cw, h))
	if err != nil {
		return cw.n, fmt.Errorf("write snapshot data: %w", err)
	}
	if n != size {
		return cw.n, fmt.Errorf("write snapshot data: wrote %d bytes, want %d", n, size)
	}
	if _, err := cw.Write(h.Sum(nil)); err != nil {
		return cw.n, fmt.Errorf("write snapshot checksum: %w", err)
	}
	return cw.n, nil
}

// Release ends the read transaction. It is safe to call more than once.
func (sn *Snapshot) Release() {
	sn.releaseOnce.Do(func() {
		sn.released = true
		_ = sn.tx.Rollback() // a read tx has nothing to roll back; the only error is "already closed"
	})
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

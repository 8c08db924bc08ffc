package fsm

import (
	"fmt"
	"io"
	"os"

	"go.etcd.io/bbolt"
)

// SnapshotInfo describes a snapshot stream.
type SnapshotInfo struct {
	AppliedIndex uint64 // the source's applied index when it was taken
	Keys         int    // user keys
	MetaKeys     int    // internal metadata keys (node addresses, ...)
	ImageBytes   int64  // size of the bbolt image inside the stream
}

// InspectSnapshot checks a snapshot stream as Restore would (framing,
// length, checksum, a bbolt image with raftkv's buckets) and describes it.
// The image is written to a temporary file in tmpDir and removed after.
// Errors about the stream wrap ErrBadSnapshot.
func InspectSnapshot(r io.Reader, tmpDir string) (SnapshotInfo, error) {
	f, err := os.CreateTemp(tmpDir, "raftkv-inspect-*.db")
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("create temp file: %w", err)
	}
	name := f.Name()
	defer os.Remove(name)
	size, err := copySnapshot(f, &streamReader{r: r})
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close temp file: %w", cerr)
	}
	if err != nil {
		return SnapshotInfo{}, err
	}
	checker := &Store{opts: Options{}.withDefaults()}
	idx, err := checker.checkDB(name)
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("%w: %w", ErrBadSnapshot, err)
	}
	info := SnapshotInfo{AppliedIndex: idx, ImageBytes: size}
	db, err := bbolt.Open(name, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("%w: open image: %w", ErrBadSnapshot, err)
	}
	defer db.Close()
	err = db.View(func(tx *bbolt.Tx) error {
		info.Keys = tx.Bucket(bucketKV).Stats().KeyN
		info.MetaKeys = tx.Bucket(bucketMeta).Stats().KeyN
		return nil
	})
	return info, err
}

// SetAppliedIndex records idx as the applied index, durably, even when it
// is lower than the current one. It is for after a Restore of a snapshot
// whose Raft index the caller knows better than the image does: an image
// restored from a backup carries the source cluster's index, and raft
// installs it at an index of its own choosing.
func (s *Store) SetAppliedIndex(idx uint64) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return ErrClosed
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if _, err := s.commitLocked(); err != nil {
		return fmt.Errorf("set applied index %d: %w", idx, err)
	}
	if err := s.db.Update(func(tx *bbolt.Tx) error { return putApplied(tx, idx) }); err != nil {
		return fmt.Errorf("set applied index %d: %w", idx, err)
	}
	s.applied.Store(idx)
	return nil
}

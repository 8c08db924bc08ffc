package fsm

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"go.etcd.io/bbolt"
)

// restoreTempPattern is appended to the db path to name Restore's temporary file (os.CreateTemp
// replaces the "*"); Open removes leftovers with filepath.Glob.
const restoreTempPattern = ".restore-*.tmp"

// Restore replaces the whole state with a snapshot stream written by Snapshot.WriteTo.
//
// The stream is first written to a temporary file next to the db, fsynced and checked (framing,
// length, checksum, bbolt can open it, the buckets are present); only then is the current db closed,
// the temporary file renamed over it, the directory fsynced and the db reopened. A crash at any point
// leaves either the old or the new state, never a mix. A bad or truncated stream gives an error
// wrapping ErrBadSnapshot and leaves the old state in place and usable.
//
// Reads and writes keep running against the old state while the stream is copied; they wait only for
// the swap. The swap also waits for outstanding Snapshots to be released.
func (s *Store) Restore(r io.Reader) error {
	s.restoreMu.Lock()
	defer s.restoreMu.Unlock()
	start := time.Now()

	tmp, size, idx, err := s.receiveSnapshot(r)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := s.swap(tmp); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("restore: %w", err)
	}
	s.log.Info("fsm restored from snapshot", "applied_index", idx, "bytes", size, "duration", time.Since(start))
	return nil
}

// receiveSnapshot copies the stream into a checked, fsynced temporary file and returns its path, the
// size of the bbolt image and the applied index it holds. On error no file is left behind.
func (s *Store) receiveSnapshot(r io.Reader) (path string, size int64, idx uint64, err error) {
	f, err := os.CreateTemp(filepath.Dir(s.path), filepath.Base(s.path)+restoreTempPattern)
	if err != nil {
		return "", 0, 0, fmt.Errorf("create temp file: %w", err)
	}
	name := f.Name()
	defer func() {
		if f != nil {
			_ = f.Close()
		}
		if err != nil {
			_ = os.Remove(name)
		}
	}()

	sr := &streamReader{r: bufio.NewReaderSize(r, 1<<16)}
	size, err = copySnapshot(f, sr)
	if err != nil {
		if sr.err != nil && !errors.Is(err, ErrBadSnapshot) {
			// The stream failed, not this node's disk.
			err = fmt.Errorf("%w: %w", ErrBadSnapshot, err)
		}
		return "", 0, 0, err
	}
	if err := f.Sync(); err != nil {
		return "", 0, 0, fmt.Errorf("fsync temp file: %w", err)
	}
	if err := f.Close(); err != nil {
		f = nil
		return "", 0, 0, fmt.Errorf("close temp file: %w", err)
	}
	f = nil
	idx, err = s.checkDB(name)
	if err != nil {
		return "", 0, 0, fmt.Errorf("%w: %w", ErrBadSnapshot, err)
	}
	return name, size, idx, nil
}

// copySnapshot checks the framing of the stream in r and copies the bbolt image into w. Errors about
// the stream's content wrap ErrBadSnapshot.
func copySnapshot(w io.Writer, r io.Reader) (int64, error) {
	var hdr [snapshotHeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, fmt.Errorf("%w: read header: %w", ErrBadSnapshot, err)
	}
	if !bytes.Equal(hdr[:8], snapshotMagic[:]) {
		return 0, fmt.Errorf("%w: not a raftkv snapshot (bad magic or version)", ErrBadSnapshot)
	}
	size := int64(binary.BigEndian.Uint64(hdr[8:]))
	if size <= 0 {
		return 0, fmt.Errorf("%w: bad image size %d", ErrBadSnapshot, size)
	}
	// A forged size costs nothing: CopyN stops at the end of the stream.
	h := sha256.New()
	n, err := io.CopyN(io.MultiWriter(w, h), r, size)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return n, fmt.Errorf("%w: truncated: %d of %d image bytes", ErrBadSnapshot, n, size)
		}
		return n, fmt.Errorf("copy image: %w", err)
	}
	var sum [snapshotTrailerSize]byte
	if _, err := io.ReadFull(r, sum[:]); err != nil {
		return n, fmt.Errorf("%w: read checksum: %w", ErrBadSnapshot, err)
	}
	if !bytes.Equal(sum[:], h.Sum(nil)) {
		return n, fmt.Errorf("%w: checksum mismatch", ErrBadSnapshot)
	}
	var extra [1]byte
	if m, err := r.Read(extra[:]); m > 0 || (err != nil && !errors.Is(err, io.EOF)) {
		return n, fmt.Errorf("%w: data after the checksum", ErrBadSnapshot)
	}
	return n, nil
}

// checkDB checks the bbolt file at path and returns its applied index. The checksum already rules out
// a damaged transfer; this catches an image that is not a sound raftkv store. bbolt trusts its file:
// a malformed one can make it panic, fault reading past the end of the mapping, recurse forever or
// panic in a goroutine of its own (out of reach of recover) when the live store opens it read-write.
// So the page structure is checked first without bbolt (checkImageStructure); only then is the file
// opened read-only, the buckets looked up and every entry decoded. Panics and faults left become
// errors here.
func (s *Store) checkDB(path string) (idx uint64, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed image: %v", p)
		}
	}()
	fi, err := os.Stat(path)
	if err != nil {
		return 0, fmt.Errorf("stat image: %w", err)
	}
	if err := checkImageFile(path, fi.Size()); err != nil {
		return 0, err
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: s.opts.Timeout})
	if err != nil {
		return 0, fmt.Errorf("open image: %w", err)
	}
	defer db.Close()
	err = db.View(func(tx *bbolt.Tx) error {
		if tx.Size() > fi.Size() {
			return fmt.Errorf("image is %d bytes, its meta page says %d", fi.Size(), tx.Size())
		}
		for _, name := range allBuckets {
			if tx.Bucket(name) == nil {
				return fmt.Errorf("bucket %s missing", name)
			}
		}
		// Every entry must decode, or reads of it would fail after the restore.
		err := tx.Bucket(bucketKV).ForEach(func(k, v []byte) error {
			_, _, err := parseEntry(k, v) // v is nil for a nested bucket: rejected too
			return err
		})
		if err != nil {
			return err
		}
		err = tx.Bucket(bucketMeta).ForEach(func(k, v []byte) error {
			if v == nil {
				return fmt.Errorf("meta %q is a bucket", k)
			}
			return nil
		})
		if err != nil {
			return err
		}
		idx, err = readApplied(tx)
		return err
	})
	return idx, err
}

// checkImageFile runs checkImageStructure on the file at path.
func checkImageFile(path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open image: %w", err)
	}
	defer f.Close()
	if err := checkImageStructure(f, size); err != nil {
		return fmt.Errorf("bbolt image: %w", err)
	}
	return nil
}

// swap replaces the live db with the checked file at tmp.
func (s *Store) swap(tmp string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return ErrClosed
	}
	// Pending entries are committed first: should the rename fail, the old state reopens whole.
	s.wmu.Lock()
	_, err := s.commitLocked()
	s.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("replace db: %w", err)
	}
	if err := s.db.Close(); err != nil {
		// bbolt has released the file whatever the error; reopen below either way.
		s.log.Warn("close fsm db before restore", "err", err)
	}
	s.db = nil
	renameErr := os.Rename(tmp, s.path)
	if renameErr == nil {
		if err := syncDir(filepath.Dir(s.path)); err != nil {
			// The new state is in place (and reopened below) but the rename may not survive a crash.
			renameErr = err
		}
	}
	// After a failed rename this reopens the old state, so the store stays usable.
	db, idx, err := openDB(s.path, s.opts)
	if err != nil {
		return errors.Join(renameErr, fmt.Errorf("reopen: %w", err))
	}
	s.db = db
	s.applied.Store(idx)
	if renameErr != nil {
		return fmt.Errorf("replace db: %w", renameErr)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync dir %s: %w", dir, err)
	}
	return nil
}

// streamReader remembers the last read error of the stream, to tell a failing stream from a failing
// local disk.
type streamReader struct {
	r   io.Reader
	err error
}

func (s *streamReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		s.err = err
	}
	return n, err
}

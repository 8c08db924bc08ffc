package fsm

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"go.etcd.io/bbolt"
)

// Digest summarises the whole state machine, for comparing nodes: two stores at the same
// AppliedIndex must have the same Digest.
type Digest struct {
	AppliedIndex uint64
	Digest       string // SHA-256, hex
	// KVDigest covers the kv bucket only: the user's data, without the
	// cluster's own metadata (node addresses), so it compares across clusters
	// (a backup and the cluster it was restored into).
	KVDigest string
	Keys     int // number of kv keys
}

// Digest hashes every kv entry (key, value, flags, create and modify index) and then every meta entry,
// each bucket in key order, in one read transaction, and returns it with the applied index read in
// that transaction. The applied index itself is not hashed: the digest is a function of the data only.
//
// Each record is: a tag byte ('k' or 'm'), uvarint len(key), key, uvarint len(value), value and, for
// kv, Flags, CreateIndex and ModifyIndex as 8-byte big-endian. The encoding is independent of the
// on-disk entry format, so a format change does not change digests.
func (s *Store) Digest() (Digest, error) {
	var d Digest
	err := s.view(func(tx *bbolt.Tx) error {
		var err error
		if d.AppliedIndex, err = readApplied(tx); err != nil {
			return err
		}
		h, kvh := sha256.New(), sha256.New()
		var buf []byte
		record := func(tag byte, k, v []byte) []byte {
			buf = append(buf[:0], tag)
			buf = binary.AppendUvarint(buf, uint64(len(k)))
			buf = append(buf, k...)
			buf = binary.AppendUvarint(buf, uint64(len(v)))
			return append(buf, v...)
		}
		err = tx.Bucket(bucketKV).ForEach(func(k, v []byte) error {
			e, value, err := parseEntry(k, v)
			if err != nil {
				return err
			}
			buf = record('k', k, value)
			buf = binary.BigEndian.AppendUint64(buf, e.Flags)
			buf = binary.BigEndian.AppendUint64(buf, e.CreateIndex)
			buf = binary.BigEndian.AppendUint64(buf, e.ModifyIndex)
			h.Write(buf)
			kvh.Write(buf)
			d.Keys++
			return nil
		})
		if err != nil {
			return err
		}
		err = tx.Bucket(bucketMeta).ForEach(func(k, v []byte) error {
			h.Write(record('m', k, v))
			return nil
		})
		d.Digest = hex.EncodeToString(h.Sum(nil))
		d.KVDigest = hex.EncodeToString(kvh.Sum(nil))
		return err
	})
	if err != nil {
		return Digest{}, fmt.Errorf("digest: %w", err)
	}
	return d, nil
}

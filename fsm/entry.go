package fsm

import (
	"encoding/binary"
	"fmt"
	"slices"
)

// entryVersion is the first byte of every value in the kv bucket.
const entryVersion = 1

// Entry is one key as stored, with the indexes of the log entries that created and last changed it.
type Entry struct {
	Key         string
	Value       []byte // nil when empty
	Flags       uint64
	CreateIndex uint64
	ModifyIndex uint64
}

// encodeEntry returns the kv bucket value for e (see the storage layout in doc.go). The result is a
// fresh slice: bbolt keeps references to Put values until the transaction commits.
func encodeEntry(e Entry) []byte {
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64+len(e.Value))
	b = append(b, entryVersion)
	b = binary.AppendUvarint(b, e.Flags)
	b = binary.AppendUvarint(b, e.CreateIndex)
	b = binary.AppendUvarint(b, e.ModifyIndex)
	return append(b, e.Value...)
}

// decodeEntry decodes a kv bucket value. The Value is copied out of b, which may point into bbolt's
// mmap and is only valid during its transaction.
func decodeEntry(key, b []byte) (Entry, error) {
	e, value, err := parseEntry(key, b)
	if len(value) > 0 {
		e.Value = slices.Clone(value)
	}
	return e, err
}

// parseEntry decodes a kv bucket value without copying: Value is left nil and the returned value
// aliases b.
func parseEntry(key, b []byte) (e Entry, value []byte, err error) {
	if len(b) == 0 || b[0] != entryVersion {
		return Entry{}, nil, fmt.Errorf("decode entry %q: %w: bad version", key, ErrCorrupt)
	}
	e.Key = string(key)
	off := 1
	for _, p := range []*uint64{&e.Flags, &e.CreateIndex, &e.ModifyIndex} {
		v, n, err := readUvarint(b[off:])
		if err != nil {
			return Entry{}, nil, fmt.Errorf("decode entry %q: %w: %w", key, ErrCorrupt, err)
		}
		*p = v
		off += n
	}
	return e, b[off:], nil
}

package fsm

import (
	"bytes"
	"fmt"
	"slices"

	"go.etcd.io/bbolt"
)

// Stats describes the store.
type Stats struct {
	Keys         int    // number of kv keys (meta excluded)
	SizeBytes    int64  // size of the bbolt data (as of the read transaction)
	AppliedIndex uint64 // applied index read in the same transaction
}

// Get returns the entry for key, and whether it exists.
func (s *Store) Get(key string) (Entry, bool, error) {
	var (
		e     Entry
		found bool
	)
	err := s.view(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketKV).Get([]byte(key))
		if v == nil {
			return nil
		}
		var err error
		e, err = decodeEntry([]byte(key), v)
		found = err == nil
		return err
	})
	if err != nil {
		return Entry{}, false, fmt.Errorf("get %q: %w", key, err)
	}
	return e, found, nil
}

// List returns every entry whose key starts with prefix (all of them for ""), sorted by key.
func (s *Store) List(prefix string) ([]Entry, error) { return s.ListLimit(prefix, 0) }

// ListLimit is List with a bound on the answer: when the entries' keys and stored values (the value
// plus its few bytes of entry header) plus EntryOverhead bytes per entry add up to more than maxBytes, it stops reading and returns an error
// wrapping ErrResultTooLarge, so a listing never holds more than about maxBytes in memory.
// maxBytes 0 = no limit.
func (s *Store) ListLimit(prefix string, maxBytes int64) ([]Entry, error) {
	var out []Entry
	var size int64
	err := s.view(func(tx *bbolt.Tx) error {
		return forEachPrefix(tx.Bucket(bucketKV), []byte(prefix), func(k, v []byte) error {
			if size += int64(len(k) + len(v) + EntryOverhead); maxBytes > 0 && size > maxBytes {
				return fmt.Errorf("%w: over %d bytes after %d entries", ErrResultTooLarge, maxBytes, len(out))
			}
			e, err := decodeEntry(k, v)
			if err != nil {
				return err
			}
			out = append(out, e)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list %q: %w", prefix, err)
	}
	return out, nil
}

// EntryOverhead is what ListLimit and KeysLimit count for each entry besides its key and value:
// roughly its share of the answer's framing, so that many tiny entries are bounded too.
const EntryOverhead = 64

// Keys returns the keys that start with prefix, sorted, with Consul's separator semantics: when
// separator is not empty, a key that contains separator after the prefix is folded into
// prefix + (the rest up to and including the first separator), and folded keys are listed once.
// With keys "web/1", "web/sub/2" and "x", Keys("", "/") is ["web/", "x"] and Keys("web/", "/") is
// ["web/1", "web/sub/"].
func (s *Store) Keys(prefix, separator string) ([]string, error) {
	return s.KeysLimit(prefix, separator, 0)
}

// KeysLimit is Keys with a bound on the answer: when the names plus EntryOverhead bytes per name add
// up to more than maxBytes, it stops and returns an error wrapping ErrResultTooLarge. maxBytes 0 = no
// limit.
func (s *Store) KeysLimit(prefix, separator string, maxBytes int64) ([]string, error) {
	var out []string
	var size int64
	add := func(name []byte) error {
		if size += int64(len(name) + EntryOverhead); maxBytes > 0 && size > maxBytes {
			return fmt.Errorf("%w: over %d bytes after %d keys", ErrResultTooLarge, maxBytes, len(out))
		}
		out = append(out, string(name))
		return nil
	}
	err := s.view(func(tx *bbolt.Tx) error {
		p := []byte(prefix)
		c := tx.Bucket(bucketKV).Cursor()
		for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); {
			rest := k[len(p):]
			i := -1
			if separator != "" {
				i = bytes.Index(rest, []byte(separator))
			}
			if i < 0 {
				if err := add(k); err != nil {
					return err
				}
				k, _ = c.Next()
				continue
			}
			folded := k[:len(p)+i+len(separator)]
			if err := add(folded); err != nil {
				return err
			}
			// Every key between folded and its successor folds to the same name: jump over them.
			next := prefixSuccessor(folded)
			if next == nil {
				break
			}
			k, _ = c.Seek(next)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("keys %q: %w", prefix, err)
	}
	return out, nil
}

// Meta returns the value of key in the meta bucket (written by OpSetMeta), and whether it exists.
func (s *Store) Meta(key string) ([]byte, bool, error) {
	var (
		v     []byte
		found bool
	)
	err := s.view(func(tx *bbolt.Tx) error {
		raw := tx.Bucket(bucketMeta).Get([]byte(key))
		if raw != nil {
			found = true
			v = slices.Clone(raw) // nil when empty
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("meta %q: %w", key, err)
	}
	return v, found, nil
}

// MetaList returns every meta entry whose key starts with prefix (all of them for "").
func (s *Store) MetaList(prefix string) (map[string][]byte, error) {
	out := make(map[string][]byte)
	err := s.view(func(tx *bbolt.Tx) error {
		return forEachPrefix(tx.Bucket(bucketMeta), []byte(prefix), func(k, v []byte) error {
			out[string(k)] = slices.Clone(v)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("meta list %q: %w", prefix, err)
	}
	return out, nil
}

// Stats returns the number of keys, the data size and the applied index, all from one read
// transaction. Counting keys walks the kv bucket's pages.
func (s *Store) Stats() (Stats, error) {
	var st Stats
	err := s.view(func(tx *bbolt.Tx) error {
		var err error
		if st.AppliedIndex, err = readApplied(tx); err != nil {
			return err
		}
		st.Keys = tx.Bucket(bucketKV).Stats().KeyN
		st.SizeBytes = tx.Size()
		return nil
	})
	if err != nil {
		return Stats{}, fmt.Errorf("stats: %w", err)
	}
	return st, nil
}

// forEachPrefix calls fn for every key/value of b whose key starts with prefix, in key order. k and v
// are only valid during the call.
func forEachPrefix(b *bbolt.Bucket, prefix []byte, fn func(k, v []byte) error) error {
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}

// prefixSuccessor returns the smallest key greater than every key starting with p, or nil if there is
// none (p is all 0xff bytes).
func prefixSuccessor(p []byte) []byte {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] != 0xff {
			next := slices.Clone(p[:i+1])
			next[i]++
			return next
		}
	}
	return nil
}

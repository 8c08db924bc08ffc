package fsm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
)

// Transactions: up to MaxTxnOps KV operations applied all or nothing at one log index, in the shape of
// Consul's /v1/txn. A transaction is one Command with Op OpTxn whose Value is the encoded list of
// TxnOps (so the whole transaction, values included, is at most MaxValueSize bytes).

// MaxTxnOps is the most operations one transaction may hold (Consul's limit).
const MaxTxnOps = 64

// MaxTxnResultBytes bounds what the get-tree operations of one transaction may answer (keys, values
// and EntryOverhead per entry), like the 32 MiB bound on GET ?recurse: every node builds the answer
// while it applies the entry. Over it, the get-tree fails and the transaction is rolled back.
const MaxTxnResultBytes = 32 << 20

// TxnVerb is the kind of one operation in a transaction. The numeric values are part of the log
// format: never renumber.
type TxnVerb uint8

// The verbs, with Consul's names.
const (
	TxnSet            TxnVerb = 1 // set Key=Value,Flags
	TxnCAS            TxnVerb = 2 // set only if ModifyIndex == Index (0: only if absent)
	TxnGet            TxnVerb = 3 // read Key; fails if absent
	TxnGetTree        TxnVerb = 4 // read every key under the prefix Key
	TxnCheckIndex     TxnVerb = 5 // fails unless Key exists with ModifyIndex == Index
	TxnCheckNotExists TxnVerb = 6 // fails if Key exists
	TxnDelete         TxnVerb = 7 // delete Key (absent is fine)
	TxnDeleteTree     TxnVerb = 8 // delete every key under the prefix Key
	TxnDeleteCAS      TxnVerb = 9 // delete only if ModifyIndex == Index; fails otherwise
)

var txnVerbNames = map[TxnVerb]string{
	TxnSet: "set", TxnCAS: "cas", TxnGet: "get", TxnGetTree: "get-tree", TxnCheckIndex: "check-index",
	TxnCheckNotExists: "check-not-exists", TxnDelete: "delete", TxnDeleteTree: "delete-tree",
	TxnDeleteCAS: "delete-cas",
}

// String returns Consul's name of the verb.
func (v TxnVerb) String() string {
	if s, ok := txnVerbNames[v]; ok {
		return s
	}
	return fmt.Sprintf("TxnVerb(%d)", uint8(v))
}

// ParseTxnVerb returns the verb with Consul's name s.
func ParseTxnVerb(s string) (TxnVerb, bool) {
	for v, name := range txnVerbNames {
		if name == s {
			return v, true
		}
	}
	return 0, false
}

// Writes reports whether the verb changes state.
func (v TxnVerb) Writes() bool {
	switch v {
	case TxnSet, TxnCAS, TxnDelete, TxnDeleteTree, TxnDeleteCAS:
		return true
	}
	return false
}

// prefixVerb reports whether Key is a prefix (may be empty: the whole keyspace).
func (v TxnVerb) prefixVerb() bool { return v == TxnGetTree || v == TxnDeleteTree }

// TxnOp is one operation of a transaction.
type TxnOp struct {
	Verb  TxnVerb
	Key   string
	Value []byte
	Flags uint64
	Index uint64
}

// TxnResult is the outcome of a transaction. Exactly one of Results and Errors is non-empty (Results
// may also be empty for a transaction of deletes only).
type TxnResult struct {
	// Results holds, in op order, the entries the ops produce: the entry after set/cas, the entry read
	// by get and check-index, every entry under the prefix for get-tree. Values are nil except for get
	// and get-tree (as in Consul). Deletes and check-not-exists produce nothing.
	Results []Entry
	// Errors lists every op that failed; then nothing in the transaction took effect.
	Errors []TxnError
}

// TxnError says why one op failed.
type TxnError struct {
	OpIndex int
	What    string
}

// EncodeTxn encodes ops as the Value of an OpTxn Command:
//
//	uvarint count
//	count times: byte verb, uvarint len(Key), Key, uvarint len(Value), Value, uvarint Flags, uvarint Index
func EncodeTxn(ops []TxnOp) []byte {
	b := binary.AppendUvarint(nil, uint64(len(ops)))
	for _, op := range ops {
		b = append(b, byte(op.Verb))
		b = binary.AppendUvarint(b, uint64(len(op.Key)))
		b = append(b, op.Key...)
		b = binary.AppendUvarint(b, uint64(len(op.Value)))
		b = append(b, op.Value...)
		b = binary.AppendUvarint(b, op.Flags)
		b = binary.AppendUvarint(b, op.Index)
	}
	return b
}

// DecodeTxn decodes and validates the Value of an OpTxn Command. Errors wrap ErrBadCommand. Values
// alias b.
func DecodeTxn(b []byte) ([]TxnOp, error) {
	d := decoder{b: b}
	n, err := d.uvarint("txn op count")
	if err != nil {
		return nil, err
	}
	if n == 0 || n > MaxTxnOps {
		return nil, fmt.Errorf("%w: a transaction holds 1 to %d operations, not %d", ErrBadCommand, MaxTxnOps, n)
	}
	ops := make([]TxnOp, 0, n)
	for i := range int(n) {
		if d.off >= len(b) {
			return nil, fmt.Errorf("%w: txn op %d: truncated", ErrBadCommand, i)
		}
		op := TxnOp{Verb: TxnVerb(b[d.off])}
		d.off++
		key, err := d.bytes("txn key", MaxKeySize)
		if err != nil {
			return nil, fmt.Errorf("txn op %d: %w", i, err)
		}
		op.Key = string(key)
		val, err := d.bytes("txn value", MaxValueSize)
		if err != nil {
			return nil, fmt.Errorf("txn op %d: %w", i, err)
		}
		if len(val) > 0 {
			op.Value = val
		}
		if op.Flags, err = d.uvarint("txn flags"); err != nil {
			return nil, fmt.Errorf("txn op %d: %w", i, err)
		}
		if op.Index, err = d.uvarint("txn index"); err != nil {
			return nil, fmt.Errorf("txn op %d: %w", i, err)
		}
		if err := op.Validate(); err != nil {
			return nil, fmt.Errorf("txn op %d: %w", i, err)
		}
		ops = append(ops, op)
	}
	if d.off != len(b) {
		return nil, fmt.Errorf("%w: txn: %d trailing bytes", ErrBadCommand, len(b)-d.off)
	}
	return ops, nil
}

// Validate checks one op: a known verb, a key (except for the prefix verbs), sizes within limits, and
// no value on verbs that take none.
func (op TxnOp) Validate() error {
	if _, ok := txnVerbNames[op.Verb]; !ok {
		return fmt.Errorf("%w: unknown txn verb %d", ErrBadCommand, uint8(op.Verb))
	}
	if op.Key == "" && !op.Verb.prefixVerb() {
		return fmt.Errorf("%w: %w: %s needs a key", ErrBadCommand, ErrEmptyKey, op.Verb)
	}
	if len(op.Key) > MaxKeySize {
		return fmt.Errorf("%w: %w: %d bytes, max %d", ErrBadCommand, ErrKeyTooLarge, len(op.Key), MaxKeySize)
	}
	if len(op.Value) > MaxValueSize {
		return fmt.Errorf("%w: %w: %d bytes, max %d", ErrBadCommand, ErrValueTooLarge, len(op.Value), MaxValueSize)
	}
	if len(op.Value) > 0 && op.Verb != TxnSet && op.Verb != TxnCAS {
		return fmt.Errorf("%w: %s takes no value", ErrBadCommand, op.Verb)
	}
	return nil
}

// undo is what a transaction changed in the kv bucket, to put back if an op fails.
type undo struct {
	key  []byte
	prev []byte // nil: the key was absent
}

// applyTxn runs ops at log index idx inside the batch's write transaction. Every op runs (so that
// every failing op is reported, as Consul does); if any failed, every change is put back from the
// undo list and the result carries only the errors.
func (w writer) applyTxn(idx uint64, ops []TxnOp) (TxnResult, error) {
	var res TxnResult
	var undos []undo
	save := func(key []byte) {
		var prev []byte
		if v := w.kv.Get(key); v != nil {
			prev = slices.Clone(v)
		}
		undos = append(undos, undo{key: slices.Clone(key), prev: prev})
	}
	fail := func(i int, format string, args ...any) {
		res.Errors = append(res.Errors, TxnError{OpIndex: i, What: fmt.Sprintf(format, args...)})
	}
	meta := func(e Entry) Entry { e.Value = nil; return e }
	var treeBytes int64 // what the get-trees so far answer

	for i, op := range ops {
		key := []byte(op.Key)
		cur, exists, err := w.current(key)
		if err != nil {
			return TxnResult{}, fmt.Errorf("txn op %d (%s %q): %w", i, op.Verb, op.Key, err)
		}
		cur.Key = op.Key
		switch op.Verb {
		case TxnSet, TxnCAS:
			if op.Verb == TxnCAS && (op.Index == 0 && exists || op.Index != 0 && (!exists || cur.ModifyIndex != op.Index)) {
				fail(i, "failed to set key %q, index is stale", op.Key)
				continue
			}
			save(key)
			e := Entry{Key: op.Key, Value: op.Value, Flags: op.Flags, CreateIndex: idx, ModifyIndex: idx}
			if exists {
				e.CreateIndex = cur.CreateIndex
			}
			if err := w.kv.Put(key, encodeEntry(e)); err != nil {
				return TxnResult{}, fmt.Errorf("txn op %d (%s %q): %w", i, op.Verb, op.Key, err)
			}
			res.Results = append(res.Results, meta(e))
		case TxnGet:
			if !exists {
				fail(i, "key %q doesn't exist", op.Key)
				continue
			}
			_, val, err := parseEntry(key, w.kv.Get(key))
			if err != nil {
				return TxnResult{}, fmt.Errorf("txn op %d (get %q): %w", i, op.Key, err)
			}
			if len(val) > 0 {
				cur.Value = slices.Clone(val)
			}
			res.Results = append(res.Results, cur)
		case TxnCheckIndex:
			if !exists {
				fail(i, "key %q doesn't exist", op.Key)
				continue
			}
			if cur.ModifyIndex != op.Index {
				fail(i, "current modify index %d != %d", cur.ModifyIndex, op.Index)
				continue
			}
			res.Results = append(res.Results, meta(cur))
		case TxnCheckNotExists:
			if exists {
				fail(i, "key %q exists", op.Key)
			}
		case TxnDelete:
			if exists {
				save(key)
				if err := w.kv.Delete(key); err != nil {
					return TxnResult{}, fmt.Errorf("txn op %d (%s %q): %w", i, op.Verb, op.Key, err)
				}
			}
		case TxnDeleteCAS:
			if !exists || cur.ModifyIndex != op.Index {
				fail(i, "failed to delete key %q, index is stale", op.Key)
				continue
			}
			save(key)
			if err := w.kv.Delete(key); err != nil {
				return TxnResult{}, fmt.Errorf("txn op %d (%s %q): %w", i, op.Verb, op.Key, err)
			}
		case TxnGetTree:
			c := w.kv.Cursor()
			var tree []Entry
			for k, v := c.Seek(key); k != nil && bytes.HasPrefix(k, key); k, v = c.Next() {
				if treeBytes += int64(len(k) + len(v) + EntryOverhead); treeBytes > MaxTxnResultBytes {
					tree = nil
					break
				}
				e, val, err := parseEntry(k, v)
				if err != nil {
					return TxnResult{}, fmt.Errorf("txn op %d (get-tree %q): %w", i, op.Key, err)
				}
				if len(val) > 0 {
					e.Value = slices.Clone(val)
				}
				tree = append(tree, e)
			}
			if treeBytes > MaxTxnResultBytes {
				fail(i, "get-tree %q: the answer is over the %d MiB limit; list the prefix with GET ?recurse in parts", op.Key, MaxTxnResultBytes>>20)
				continue
			}
			res.Results = append(res.Results, tree...)
		case TxnDeleteTree:
			var keys [][]byte
			c := w.kv.Cursor()
			for k, _ := c.Seek(key); k != nil && bytes.HasPrefix(k, key); k, _ = c.Next() {
				keys = append(keys, slices.Clone(k))
			}
			for _, k := range keys {
				save(k)
				if err := w.kv.Delete(k); err != nil {
					return TxnResult{}, fmt.Errorf("txn op %d (delete-tree %q): %w", i, op.Key, err)
				}
			}
		}
	}
	if len(res.Errors) == 0 {
		return res, nil
	}
	// Put everything back, newest change first, so a key changed twice ends as it started.
	for j := len(undos) - 1; j >= 0; j-- {
		u := undos[j]
		var err error
		if u.prev == nil {
			err = w.kv.Delete(u.key)
		} else {
			err = w.kv.Put(u.key, u.prev)
		}
		if err != nil {
			return TxnResult{}, fmt.Errorf("txn roll back %q: %w", u.key, err)
		}
	}
	return TxnResult{Errors: res.Errors}, nil
}

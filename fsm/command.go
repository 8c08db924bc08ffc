package fsm

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"
)

// Limits on keys and values. httpapi checks them too, so that a bad request is refused before it is
// proposed; ApplyBatch enforces them again because the log is the source of truth.
const (
	MaxKeySize   = 1024       // bytes
	MaxValueSize = 512 * 1024 // bytes
)

// commandVersion is the first byte of every encoded Command. Bump it (and keep decoding the old one)
// when the layout changes: old entries stay in the Raft log and in snapshots of it.
const commandVersion = 1

// Op is the kind of a Command.
type Op uint8

// The ops. Their numeric values are part of the log format: never renumber.
const (
	OpSet    Op = 1 // set Key=Value,Flags
	OpDelete Op = 2 // delete Key (no-op if absent, still OK)
	// OpCAS sets Key=Value,Flags only if the current ModifyIndex == Index; Index 0 means only if the key
	// is absent.
	OpCAS Op = 3
	// OpCAD deletes Key only if it exists with ModifyIndex == Index. Index 0 never matches, and an
	// absent key is not a match (OK=false). Consul's delete-cas answers true for an absent key.
	OpCAD          Op = 4
	OpDeletePrefix Op = 5 // delete every key with prefix Key (empty Key = everything)
	OpNoop         Op = 6 // changes nothing; advances the applied index (the leader's read barrier)
	// OpSetMeta sets Key=Value in the internal meta bucket (node metadata such as HTTP addresses);
	// invisible to KV reads.
	OpSetMeta    Op = 7
	OpDeleteMeta Op = 8 // delete Key from the meta bucket
	// OpTxn applies the TxnOps encoded in Value (see EncodeTxn) all or nothing; Key is empty.
	OpTxn Op = 9
	// OpBatch applies the set/delete/cas/cad Commands encoded in Value (see EncodeBatch) in order, each
	// on its own (a failed CAS does not undo the others), all at the entry's log index; Key is empty. The
	// leader coalesces concurrent single-key writes into one such entry, never two writes to one key.
	OpBatch Op = 10
)

// String returns the op's name, for logs.
func (o Op) String() string {
	switch o {
	case OpSet:
		return "set"
	case OpDelete:
		return "delete"
	case OpCAS:
		return "cas"
	case OpCAD:
		return "cad"
	case OpDeletePrefix:
		return "delete-prefix"
	case OpNoop:
		return "noop"
	case OpSetMeta:
		return "set-meta"
	case OpDeleteMeta:
		return "delete-meta"
	case OpTxn:
		return "txn"
	case OpBatch:
		return "batch"
	}
	return fmt.Sprintf("Op(%d)", uint8(o))
}

func (o Op) valid() bool { return o >= OpSet && o <= OpBatch }

// Command is one write to the state machine: the payload of a Raft log entry.
//
// Encoding (version 1):
//
//	byte    version (1)
//	byte    Op
//	uvarint len(Key), Key bytes
//	uvarint len(Value), Value bytes
//	uvarint Flags
//	uvarint Index
//
// Every field is always present, so the encoding of a Command is unique: decoding and re-encoding
// gives back the same bytes (non-minimal varints are rejected).
type Command struct {
	Op    Op
	Key   string
	Value []byte
	Flags uint64
	Index uint64 // CAS/CAD expected ModifyIndex
}

// Encode returns the encoding of c. It does not validate c.
func (c Command) Encode() []byte { return c.AppendEncode(nil) }

// AppendEncode appends the encoding of c to dst and returns the extended slice.
func (c Command) AppendEncode(dst []byte) []byte {
	dst = slices.Grow(dst, c.encodedLen())
	dst = append(dst, commandVersion, byte(c.Op))
	dst = binary.AppendUvarint(dst, uint64(len(c.Key)))
	dst = append(dst, c.Key...)
	dst = binary.AppendUvarint(dst, uint64(len(c.Value)))
	dst = append(dst, c.Value...)
	dst = binary.AppendUvarint(dst, c.Flags)
	dst = binary.AppendUvarint(dst, c.Index)
	return dst
}

// encodedLen is len(c.Encode()).
func (c Command) encodedLen() int {
	return 2 +
		uvarintLen(uint64(len(c.Key))) + len(c.Key) +
		uvarintLen(uint64(len(c.Value))) + len(c.Value) +
		uvarintLen(c.Flags) + uvarintLen(c.Index)
}

// DecodeCommand decodes an encoded Command. The returned Value is a copy (nil when empty), so b may be
// reused. Any malformed input (unknown version or op, truncation, trailing bytes, a length beyond the
// input or over MaxKeySize/MaxValueSize, a non-minimal varint) gives an error wrapping ErrBadCommand;
// it never panics and never allocates more than len(b).
//
// DecodeCommand does not call Validate: a well-formed command may still be invalid (an empty key).
func DecodeCommand(b []byte) (Command, error) {
	return decodeCommand(b, true)
}

// decodeCommand is DecodeCommand; with copyValue false the Value aliases b (ApplyBatch copies what it
// stores anyway).
func decodeCommand(b []byte, copyValue bool) (Command, error) {
	var c Command
	if len(b) < 2 {
		return c, fmt.Errorf("%w: %d bytes, too short", ErrBadCommand, len(b))
	}
	if b[0] != commandVersion {
		return c, fmt.Errorf("%w: unknown format version %d", ErrBadCommand, b[0])
	}
	c.Op = Op(b[1])
	if !c.Op.valid() {
		return c, fmt.Errorf("%w: unknown op %d", ErrBadCommand, b[1])
	}
	d := decoder{b: b, off: 2}
	key, err := d.bytes("key", MaxKeySize)
	if err != nil {
		return Command{}, err
	}
	c.Key = string(key)
	value, err := d.bytes("value", MaxValueSize)
	if err != nil {
		return Command{}, err
	}
	if len(value) > 0 {
		if copyValue {
			value = slices.Clone(value)
		}
		c.Value = value
	}
	if c.Flags, err = d.uvarint("flags"); err != nil {
		return Command{}, err
	}
	if c.Index, err = d.uvarint("index"); err != nil {
		return Command{}, err
	}
	if d.off != len(b) {
		return Command{}, fmt.Errorf("%w: %d trailing bytes", ErrBadCommand, len(b)-d.off)
	}
	return c, nil
}

// Validate reports whether c can be applied: a known op, a non-empty key (except OpDeletePrefix and
// OpNoop), a key of at most MaxKeySize and a value of at most MaxValueSize bytes. The error wraps
// ErrBadCommand and, where one fits, ErrEmptyKey, ErrKeyTooLarge or ErrValueTooLarge.
func (c Command) Validate() error {
	if !c.Op.valid() {
		return fmt.Errorf("%w: unknown op %d", ErrBadCommand, uint8(c.Op))
	}
	if c.Op == OpTxn {
		if c.Key != "" {
			return fmt.Errorf("%w: a txn command has no key", ErrBadCommand)
		}
		if len(c.Value) > MaxValueSize {
			return fmt.Errorf("%w: %w: transaction of %d bytes, max %d", ErrBadCommand, ErrValueTooLarge, len(c.Value), MaxValueSize)
		}
		if _, err := DecodeTxn(c.Value); err != nil {
			return err
		}
		return nil
	}
	if c.Op == OpBatch {
		if c.Key != "" {
			return fmt.Errorf("%w: a batch command has no key", ErrBadCommand)
		}
		if len(c.Value) > MaxValueSize {
			return fmt.Errorf("%w: %w: batch of %d bytes, max %d", ErrBadCommand, ErrValueTooLarge, len(c.Value), MaxValueSize)
		}
		if _, err := DecodeBatch(c.Value); err != nil {
			return err
		}
		return nil
	}
	if c.Key == "" && c.Op != OpDeletePrefix && c.Op != OpNoop {
		return fmt.Errorf("%w: %w: op %s needs a key", ErrBadCommand, ErrEmptyKey, c.Op)
	}
	if len(c.Key) > MaxKeySize {
		return fmt.Errorf("%w: %w: %d bytes, max %d", ErrBadCommand, ErrKeyTooLarge, len(c.Key), MaxKeySize)
	}
	if len(c.Value) > MaxValueSize {
		return fmt.Errorf("%w: %w: %d bytes, max %d", ErrBadCommand, ErrValueTooLarge, len(c.Value), MaxValueSize)
	}
	return nil
}

// decoder reads length-prefixed fields, checking every length against the input before using it.
type decoder struct {
	b   []byte
	off int
}

func (d *decoder) uvarint(field string) (uint64, error) {
	v, n, err := readUvarint(d.b[d.off:])
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %w", ErrBadCommand, field, err)
	}
	d.off += n
	return v, nil
}

func (d *decoder) bytes(field string, limit int) ([]byte, error) {
	n, err := d.uvarint(field)
	if err != nil {
		return nil, err
	}
	if n > uint64(limit) {
		return nil, fmt.Errorf("%w: %s length %d over limit %d", ErrBadCommand, field, n, limit)
	}
	if n > uint64(len(d.b)-d.off) {
		return nil, fmt.Errorf("%w: %s length %d beyond input (%d bytes left)", ErrBadCommand, field, n, len(d.b)-d.off)
	}
	v := d.b[d.off : d.off+int(n)]
	d.off += int(n)
	return v, nil
}

// readUvarint is binary.Uvarint that also rejects non-minimal encodings, so that every value has one
// encoding.
func readUvarint(b []byte) (uint64, int, error) {
	v, n := binary.Uvarint(b)
	switch {
	case n == 0:
		return 0, 0, fmt.Errorf("truncated varint")
	case n < 0:
		return 0, 0, fmt.Errorf("varint overflows 64 bits")
	case n > 1 && b[n-1] == 0:
		return 0, 0, fmt.Errorf("non-minimal varint")
	}
	return v, n, nil
}

func uvarintLen(x uint64) int { return (bits.Len64(x|1) + 6) / 7 }

package fsm

import (
	"encoding/binary"
	"fmt"
)

// Batches: the leader coalesces concurrent single-key writes (set, delete, cas, cad) into one log
// entry, so that one Raft entry, one replication and one state-machine step carry many client
// writes. A batch is one Command with Op OpBatch whose Value is the encoded list of Commands. Unlike a
// transaction, each command succeeds or fails (CAS mismatch) on its own; every command in it gets the
// entry's log index as its ModifyIndex, which is why the leader never puts two writes to one key in
// one batch (see Batchable).

// MaxBatchOps is the most commands one batch entry may hold.
const MaxBatchOps = 1024

// Batchable reports whether c may go into an OpBatch entry: a single-key write.
func (c Command) Batchable() bool {
	switch c.Op {
	case OpSet, OpDelete, OpCAS, OpCAD:
		return true
	}
	return false
}

// EncodeBatch encodes cmds as the Value of an OpBatch Command:
//
//	uvarint count
//	count times: uvarint len(encoded Command), encoded Command
func EncodeBatch(cmds []Command) []byte {
	n := uvarintLen(uint64(len(cmds)))
	for _, c := range cmds {
		l := c.encodedLen()
		n += uvarintLen(uint64(l)) + l
	}
	b := make([]byte, 0, n)
	b = binary.AppendUvarint(b, uint64(len(cmds)))
	for _, c := range cmds {
		b = binary.AppendUvarint(b, uint64(c.encodedLen()))
		b = c.AppendEncode(b)
	}
	return b
}

// DecodeBatch decodes and validates the Value of an OpBatch Command: 1 to MaxBatchOps valid
// batchable Commands. Errors wrap ErrBadCommand. Values alias b.
func DecodeBatch(b []byte) ([]Command, error) {
	d := decoder{b: b}
	n, err := d.uvarint("batch count")
	if err != nil {
		return nil, err
	}
	if n == 0 || n > MaxBatchOps {
		return nil, fmt.Errorf("%w: a batch holds 1 to %d commands, not %d", ErrBadCommand, MaxBatchOps, n)
	}
	cmds := make([]Command, 0, n)
	for i := range int(n) {
		enc, err := d.bytes("batch command", MaxValueSize+MaxKeySize+32)
		if err != nil {
			return nil, fmt.Errorf("batch command %d: %w", i, err)
		}
		c, err := decodeCommand(enc, false)
		if err == nil {
			err = c.Validate()
		}
		if err == nil && !c.Batchable() {
			err = fmt.Errorf("%w: op %s cannot be batched", ErrBadCommand, c.Op)
		}
		if err != nil {
			return nil, fmt.Errorf("batch command %d: %w", i, err)
		}
		cmds = append(cmds, c)
	}
	if d.off != len(b) {
		return nil, fmt.Errorf("%w: batch: %d trailing bytes", ErrBadCommand, len(b)-d.off)
	}
	return cmds, nil
}

// batch applies a validated OpBatch command at log index idx: each command in order, each on its
// own. It returns whether each took effect.
func (w writer) batch(idx uint64, c Command) ([]bool, error) {
	cmds, err := DecodeBatch(c.Value)
	if err != nil { // unreachable: Validate decoded it already
		return nil, err
	}
	oks := make([]bool, len(cmds))
	for i, cmd := range cmds {
		if oks[i], err = w.apply(idx, cmd); err != nil {
			return nil, fmt.Errorf("batch command %d (%s %q): %w", i, cmd.Op, cmd.Key, err)
		}
	}
	return oks, nil
}

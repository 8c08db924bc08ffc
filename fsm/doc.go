// Package fsm is raftkv's replicated state machine: the key-value data every node holds, stored in a
// single bbolt file, and the deterministic rules that turn committed Raft log entries into changes to it.
//
// It owns:
//   - the versioned encoding of a write (Command, Encode, DecodeCommand), which is what goes into the
//     Raft log;
//   - applying a batch of committed log entries in one bbolt transaction, together with the last
//     applied index (ApplyBatch), so that a crash never separates the two and replaying the log after a
//     restart skips what was already applied;
//   - local reads (Get, List, Keys, Meta, MetaList, Stats), which see only applied state;
//   - snapshots of the whole state (Snapshot, Restore) and a digest of it (Digest) for cross-node
//     comparison.
//
// It deliberately does not know about Raft: no terms, leaders, consistency levels or membership. The
// raft.FSM adapter, read barriers and everything that imports hashicorp/raft live in package cluster;
// HTTP lives in httpapi. This package imports only the standard library and bbolt.
//
// # Storage layout
//
// One bbolt file with three top-level buckets:
//
//	kv    user keys. key = the raw key bytes; value = a versioned entry:
//	        byte    version (1)
//	        uvarint Flags
//	        uvarint CreateIndex   (log index that created the key)
//	        uvarint ModifyIndex   (log index that last changed it)
//	        bytes   Value         (the rest)
//	meta  node metadata written with OpSetMeta (for example a node's HTTP address), raw key -> raw value.
//	      Replicated like kv but invisible to kv reads.
//	sys   applied_index -> 8-byte big-endian index of the last applied log entry. Written in the same
//	      transaction as the entries it covers.
//
// bbolt runs with the hashmap freelist, NoFreelistSync (the freelist is rebuilt on open instead of
// written on every commit) and a 1 GiB initial mmap (virtual memory only) so that the long read
// transaction behind a snapshot never forces a remap that would block writers. fsync stays on: an
// applied index that is persisted is never ahead of the data.
//
// # Snapshot stream
//
// A snapshot is the bbolt file as of one read transaction (bbolt Tx.WriteTo), framed so that Restore
// can reject a truncated or corrupted stream before it touches the live state:
//
//	8 bytes  magic "rkvsnap" + format version (1)
//	8 bytes  big-endian length N of the bbolt image
//	N bytes  bbolt image
//	32 bytes SHA-256 of the bbolt image
//
// # Concurrency
//
// ApplyBatch, reads, Snapshot and Digest may be called from any goroutine. Reads run in their own read
// transactions and copy values out, so results stay valid after the call. Restore and Close wait for
// running operations and for outstanding Snapshots to be released; a Snapshot that is never released
// blocks them forever.
package fsm

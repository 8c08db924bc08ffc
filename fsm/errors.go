package fsm

import "errors"

// Sentinel errors. Errors returned by this package wrap them with context; match with errors.Is.
var (
	// ErrBadCommand: an encoded command could not be decoded (unknown format version or op, truncated,
	// trailing bytes, forged lengths) or a command is invalid (see Command.Validate).
	ErrBadCommand = errors.New("bad command")
	// ErrEmptyKey: a command that needs a key has none. Always wrapped together with ErrBadCommand.
	ErrEmptyKey = errors.New("empty key")
	// ErrKeyTooLarge: a key is longer than MaxKeySize. Always wrapped together with ErrBadCommand.
	ErrKeyTooLarge = errors.New("key too large")
	// ErrValueTooLarge: a value is longer than MaxValueSize. Always wrapped together with ErrBadCommand.
	ErrValueTooLarge = errors.New("value too large")
	// ErrBadSnapshot: a snapshot stream given to Restore is truncated, corrupt or not a raftkv
	// snapshot. The previous state is unchanged.
	ErrBadSnapshot = errors.New("bad snapshot")
	// ErrSnapshotReleased: Snapshot.WriteTo was called after Snapshot.Release.
	ErrSnapshotReleased = errors.New("snapshot released")
	// ErrCorrupt: data read from the store does not have the expected encoding.
	ErrCorrupt = errors.New("corrupt fsm data")
	// ErrResultTooLarge: a bounded read (ListLimit, KeysLimit) would answer more than its limit.
	ErrResultTooLarge = errors.New("result too large")
	// ErrClosed: the Store has been closed (or a failed Restore could not reopen it).
	ErrClosed = errors.New("fsm store closed")
)

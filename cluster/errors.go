package cluster

import (
	"errors"
	"fmt"
)

// Sentinel errors. Each says whether the operation certainly did not happen
// (ErrNotLeader, ErrNoLeader, ErrBadRequest, ErrShuttingDown,
// ErrNotReady) or may have happened (ErrOutcomeUnknown).
var (
	// ErrNoLeader: no leader is known; nothing was proposed.
	ErrNoLeader = errors.New("no known leader")
	// ErrNotReady: this node is leader but has not yet applied its
	// post-election barrier, so it cannot serve linearizable reads yet.
	ErrNotReady = errors.New("leader not ready")
	// ErrBadRequest: the command was rejected as invalid; nothing changed.
	ErrBadRequest = errors.New("bad request")
	// ErrOutcomeUnknown: the command was proposed but this node cannot tell
	// whether it committed (leadership lost after proposing, timeout, shutdown).
	ErrOutcomeUnknown = errors.New("outcome unknown")
	// ErrShuttingDown: the node is closing; nothing was proposed.
	ErrShuttingDown = errors.New("node is shutting down")
	// ErrLeftCluster: an automatic rejoin of a server that left gracefully.
	ErrLeftCluster = errors.New("server left the cluster gracefully; join it explicitly to bring it back")
	// ErrUnknownServer: a membership change names a server that is not a member.
	ErrUnknownServer = errors.New("unknown server")
	// ErrDiskFull: a write was refused because this leader, or a quorum of
	// voters, is below its free disk reserve (Config.MinFreeDisk); nothing
	// was proposed. Matched by *DiskFullError, which names the nodes.
	ErrDiskFull = errors.New("disk full")
)

// NotLeaderError says this node is not the leader and, when known, who is.
// The operation was not proposed. errors.Is(err, ErrNotLeader) matches it.
type NotLeaderError struct {
	LeaderID       string
	LeaderAddr     string // Raft address
	LeaderHTTPAddr string // empty when the leader never registered one
}

// ErrNotLeader matches any *NotLeaderError through errors.Is.
var ErrNotLeader = errors.New("not the leader")

func (e *NotLeaderError) Error() string {
	if e.LeaderID == "" {
		return "not the leader, no leader known"
	}
	return fmt.Sprintf("not the leader, leader is %s at %s", e.LeaderID, e.LeaderAddr)
}

// Is makes errors.Is(err, ErrNotLeader) true.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

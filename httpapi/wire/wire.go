// Package wire holds the JSON shapes of raftkv's HTTP API. It is a leaf
// package (standard library only) so any Go client can import it without
// pulling in the server. The KV and operator shapes follow Consul's API.
package wire

// Header names raftkv sets on answers.
const (
	HeaderIndex       = "X-Consul-Index"
	HeaderKnownLeader = "X-Consul-KnownLeader"
	HeaderLastContact = "X-Consul-LastContact"
	// HeaderOutcome is "failed" or "unknown" on every error answer.
	HeaderOutcome = "X-Raftkv-Outcome"
	// HeaderForwarded marks a request a follower forwarded to the leader; it
	// is never forwarded again.
	HeaderForwarded = "X-Raftkv-Forwarded"
)

// Outcomes of a failed request.
const (
	OutcomeFailed  = "failed"  // certainly did not happen
	OutcomeUnknown = "unknown" // may or may not have happened
)

// KVPair is one entry as GET /v1/kv answers it. Value is base64 in JSON.
type KVPair struct {
	Key         string
	Value       []byte
	Flags       uint64
	CreateIndex uint64
	ModifyIndex uint64
	LockIndex   uint64
}

// Error is the body of every error answer.
type Error struct {
	Error   string `json:"error"`
	Outcome string `json:"outcome"`
}

// NodeStatus is GET /v1/status/node.
type NodeStatus struct {
	ID             string
	RaftAddr       string
	HTTPAddr       string
	State          string
	Term           uint64
	LeaderID       string
	LeaderAddr     string
	LeaderHTTPAddr string
	LastIndex      uint64
	LastLogTerm    uint64
	CommitIndex    uint64
	AppliedIndex   uint64
	LastContactMs  int64 // -1 when never contacted
	Voter          bool
	Member         bool
	ReadReady      bool
	SnapshotsTaken uint64
	Restores       uint64
	// Free space of the node's data dir filesystem, its reserve
	// (--min-free-disk, 0 = guard off) and whether it is below it, refusing
	// writes. Absent from older versions (decoded as zero: not low).
	DiskFreeBytes    uint64
	DiskReserveBytes uint64
	DiskLow          bool
}

// Digest is GET /v1/status/digest.
type Digest struct {
	AppliedIndex uint64
	Digest       string
	KVDigest     string // the kv data only, comparable across clusters
	Keys         int
}

// RaftServer is one entry of GET /v1/operator/raft/configuration.
type RaftServer struct {
	ID              string
	Node            string
	Address         string
	Leader          bool
	Voter           bool
	ProtocolVersion string
	HTTPAddr        string // raftkv addition
}

// RaftConfiguration is GET /v1/operator/raft/configuration.
type RaftConfiguration struct {
	Servers []RaftServer
	Index   uint64
}

// JoinRequest is the body of POST /v1/cluster/join.
type JoinRequest struct {
	ID       string
	RaftAddr string
	HTTPAddr string
	// Fresh: the joining server has no Raft state (new or wiped data dir).
	Fresh bool `json:",omitempty"`
	// Auto: sent by a node's own watchdog after it noticed it was removed;
	// refused with 409 for a node that left gracefully.
	Auto bool `json:",omitempty"`
}

// LeaveRequest is the body of POST /v1/cluster/leave; an empty ID means the
// node answering.
type LeaveRequest struct {
	ID string
}

// ReadIndex is GET /v1/internal/read-index, answered by the leader.
type ReadIndex struct {
	Index uint64
}

// AutopilotServer is one entry of GET /v1/operator/autopilot/health
// (Consul's shape; LastContact is a Go duration string).
type AutopilotServer struct {
	ID          string
	Name        string
	Address     string
	SerfStatus  string
	Version     string
	Leader      bool
	LastContact string
	LastTerm    uint64
	LastIndex   uint64
	Healthy     bool
	Voter       bool
	StableSince string
	// raftkv additions
	HTTPAddr      string
	Reachable     bool
	Lag           uint64
	LastContactMs int64
}

// AutopilotHealth is GET /v1/operator/autopilot/health: 200 when Healthy,
// 429 when not.
type AutopilotHealth struct {
	Healthy          bool
	FailureTolerance int
	Leader           string
	Servers          []AutopilotServer
}

// LeaderChange is one entry of GET /v1/operator/raft/leader-history (a JSON
// array, oldest first). An empty LeaderID means the node lost its leader.
type LeaderChange struct {
	Time       string // RFC 3339 with nanoseconds, UTC
	Term       uint64
	LeaderID   string
	LeaderAddr string
}

// TxnOp is one element of the PUT /v1/txn body (Consul's shape; only KV
// operations are supported).
type TxnOp struct {
	KV *TxnKVOp `json:"KV,omitempty"`
	// Other Consul operation kinds are refused with 400.
	Node    any `json:"Node,omitempty"`
	Service any `json:"Service,omitempty"`
	Check   any `json:"Check,omitempty"`
	Session any `json:"Session,omitempty"`
}

// TxnKVOp is a KV operation in a transaction. Verb is one of set, cas, get,
// get-tree, check-index, check-not-exists, delete, delete-tree, delete-cas.
type TxnKVOp struct {
	Verb    string
	Key     string
	Value   []byte `json:",omitempty"` // base64 in JSON
	Flags   uint64 `json:",omitempty"`
	Index   uint64 `json:",omitempty"`
	Session string `json:",omitempty"` // refused: raftkv has no sessions
}

// TxnResponse is the answer to PUT /v1/txn: Results on success (200),
// Errors when the transaction was rolled back (409).
type TxnResponse struct {
	Results []TxnResult
	Errors  []TxnError
}

// TxnResult is one result of a transaction.
type TxnResult struct {
	KV *KVPair `json:"KV,omitempty"`
}

// TxnError names a failed operation by its position in the request.
type TxnError struct {
	OpIndex int
	What    string
}

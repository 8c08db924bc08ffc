package cluster

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// LeaderHistorySize is how many leader changes a node remembers.
const LeaderHistorySize = 50

// LeaderChange is one leader change observed by this node. An empty
// LeaderID and LeaderAddr mean the node lost its leader (an election began
// or it stopped hearing from the leader).
type LeaderChange struct {
	Time       time.Time
	Term       uint64 // this node's current term when it observed the change
	LeaderID   string
	LeaderAddr string
}

// leaderHistory is a bounded ring of leader changes; the zero value is
// ready to use.
type leaderHistory struct {
	mu   sync.Mutex
	buf  [LeaderHistorySize]LeaderChange
	next int // where the next entry goes
	n    int // entries held, at most LeaderHistorySize
}

// record appends c unless it repeats the newest entry (same leader in the
// same term), overwriting the oldest entry when the ring is full.
func (h *leaderHistory) record(c LeaderChange) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n > 0 {
		last := h.buf[(h.next+LeaderHistorySize-1)%LeaderHistorySize]
		if last.Term == c.Term && last.LeaderID == c.LeaderID && last.LeaderAddr == c.LeaderAddr {
			return
		}
	}
	h.buf[h.next] = c
	h.next = (h.next + 1) % LeaderHistorySize
	if h.n < LeaderHistorySize {
		h.n++
	}
}

// list returns the entries oldest first.
func (h *leaderHistory) list() []LeaderChange {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]LeaderChange, 0, h.n)
	start := (h.next + LeaderHistorySize - h.n) % LeaderHistorySize
	for i := range h.n {
		out = append(out, h.buf[(start+i)%LeaderHistorySize])
	}
	return out
}

// recordLeader is observe's hook for raft's leader observations.
func (n *Node) recordLeader(o raft.LeaderObservation) {
	n.history.record(LeaderChange{
		Time:       time.Now(),
		Term:       n.raft.CurrentTerm(),
		LeaderID:   string(o.LeaderID),
		LeaderAddr: string(o.LeaderAddr),
	})
}

// LeaderHistory returns the last LeaderHistorySize leader changes this node
// observed since it started, oldest first.
func (n *Node) LeaderHistory() []LeaderChange { return n.history.list() }

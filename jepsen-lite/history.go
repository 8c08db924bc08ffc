package jepsenlite

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
	"time"
)

// Outcome is what a client knows about an operation once it completes.
type Outcome string

const (
	// OutcomeOK: the operation happened and its result is known.
	OutcomeOK Outcome = "ok"
	// OutcomeFail: the server proved the operation did not happen (or, for a
	// CAS, that it happened and found a different value).
	OutcomeFail Outcome = "fail"
	// OutcomeInfo: unknown; the operation may or may not have taken effect.
	OutcomeInfo Outcome = "info"
)

// Operation kinds recorded in a history.
const (
	KindRead      = "read"       // linearizable (default) read
	KindStaleRead = "stale-read" // ?stale read: may lag, never invents
	KindWrite     = "write"      // unconditional put
	KindCAS       = "cas"        // put ?cas=<index of Expect>
	KindFinalRead = "final-read" // a read after healing (set workload)
)

// Op is one client operation: its invocation, its completion and what the
// client learned. Values are never empty strings, so "" means "absent".
type Op struct {
	Index   int    `json:"index"`
	Process int    `json:"process"`
	Kind    string `json:"kind"`
	Node    string `json:"node"`
	Key     string `json:"key"`
	// Value is the value written (write) or the new value (cas).
	Value string `json:"value,omitempty"`
	// Expect is the value a CAS expects to replace ("" = absent).
	Expect      string `json:"expect,omitempty"`
	ExpectIndex uint64 `json:"expect_index,omitempty"`
	// Result is the value a read saw ("" = absent).
	Result string `json:"result,omitempty"`
	// Swapped is the answer of a CAS that completed.
	Swapped   bool    `json:"swapped,omitempty"`
	RaftIndex uint64  `json:"raft_index,omitempty"`
	Outcome   Outcome `json:"outcome"`
	Error     string  `json:"error,omitempty"`
	// Invoke and Complete are nanoseconds since the run's start on the
	// monotonic clock.
	Invoke   int64 `json:"invoke_ns"`
	Complete int64 `json:"complete_ns"`
}

// Latency is how long the operation took.
func (o Op) Latency() time.Duration { return time.Duration(o.Complete - o.Invoke) }

// IsWrite reports whether the op can change state.
func (o Op) IsWrite() bool { return o.Kind == KindWrite || o.Kind == KindCAS }

func (o Op) String() string {
	var what string
	switch o.Kind {
	case KindRead, KindStaleRead, KindFinalRead:
		what = fmt.Sprintf("%s(%q) -> %s", o.Kind, o.Key, show(o.Result))
	case KindWrite:
		what = fmt.Sprintf("write(%q, %s)", o.Key, o.Value)
	case KindCAS:
		what = fmt.Sprintf("cas(%q, %s@%d -> %s) -> %v", o.Key, show(o.Expect), o.ExpectIndex, o.Value, o.Swapped)
	}
	s := fmt.Sprintf("#%d p%d %-4s on %s [%s .. %s] %s", o.Index, o.Process, o.Outcome, o.Node,
		fmtNS(o.Invoke), fmtNS(o.Complete), what)
	if o.Error != "" {
		s += " err=" + o.Error
	}
	return s
}

func show(v string) string {
	if v == "" {
		return "<absent>"
	}
	if len(v) > 60 {
		return "…" + v[len(v)-60:]
	}
	return v
}

func fmtNS(ns int64) string { return fmt.Sprintf("%.3fs", float64(ns)/1e9) }

// NemesisEvent records a fault starting or ending.
type NemesisEvent struct {
	Time    int64    `json:"time_ns"`
	Phase   string   `json:"phase"` // "start" | "end" | "skip"
	Fault   string   `json:"fault"`
	Targets []string `json:"targets,omitempty"`
	Leader  string   `json:"leader,omitempty"`
	Detail  string   `json:"detail,omitempty"`
}

// LeaderEvent records a change of the leader the harness observes.
type LeaderEvent struct {
	Time   int64  `json:"time_ns"`
	Leader string `json:"leader"` // "" = none known
	Term   uint64 `json:"term"`
}

// record is one line of history.jsonl.
type record struct {
	Type    string        `json:"type"` // op | nemesis | leader
	Op      *Op           `json:"op,omitempty"`
	Nemesis *NemesisEvent `json:"nemesis,omitempty"`
	Leader  *LeaderEvent  `json:"leader,omitempty"`
}

// History is the concurrent-safe record of a run. Times come from one
// monotonic clock started by NewHistory.
type History struct {
	start time.Time

	mu      sync.Mutex
	ops     []Op
	nemesis []NemesisEvent
	leaders []LeaderEvent
	w       *bufio.Writer
	f       io.Closer
}

// NewHistory starts the clock. If path is not empty every event is also
// streamed to it as JSON lines, so a crashed run leaves its history behind.
func NewHistory(path string) (*History, error) {
	h := &History{start: time.Now()}
	if path != "" {
		f, err := os.Create(path)
		if err != nil {
			return nil, fmt.Errorf("create history: %w", err)
		}
		h.f, h.w = f, bufio.NewWriter(f)
	}
	return h, nil
}

// Now is the time since the start of the history, in nanoseconds.
func (h *History) Now() int64 { return int64(time.Since(h.start)) }

// Start returns the wall-clock start of the run.
func (h *History) Start() time.Time { return h.start }

func (h *History) write(r record) {
	if h.w == nil {
		return
	}
	b, _ := json.Marshal(r)
	h.w.Write(b)
	h.w.WriteByte('\n')
}

// AddOp appends a completed op, assigning its index.
func (h *History) AddOp(op Op) Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	op.Index = len(h.ops)
	h.ops = append(h.ops, op)
	h.write(record{Type: "op", Op: &op})
	return op
}

// AddNemesis appends a nemesis event stamped now.
func (h *History) AddNemesis(ev NemesisEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ev.Time = int64(time.Since(h.start))
	h.nemesis = append(h.nemesis, ev)
	h.write(record{Type: "nemesis", Nemesis: &ev})
}

// AddLeader appends a leader change stamped now.
func (h *History) AddLeader(ev LeaderEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ev.Time = int64(time.Since(h.start))
	h.leaders = append(h.leaders, ev)
	h.write(record{Type: "leader", Leader: &ev})
}

// Ops returns a copy of the ops, ordered by index.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Op(nil), h.ops...)
}

// Nemesis returns a copy of the nemesis events.
func (h *History) Nemesis() []NemesisEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]NemesisEvent(nil), h.nemesis...)
}

// Leaders returns a copy of the leader timeline.
func (h *History) Leaders() []LeaderEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]LeaderEvent(nil), h.leaders...)
}

// Close flushes the history file.
func (h *History) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.w == nil {
		return nil
	}
	err := h.w.Flush()
	if cerr := h.f.Close(); err == nil {
		err = cerr
	}
	h.w = nil
	return err
}

// LoadHistory reads a history.jsonl file (as written by History, or
// hand-written in testdata) back into memory.
func LoadHistory(r io.Reader) (ops []Op, nem []NemesisEvent, leaders []LeaderEvent, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if len(b) == 0 || b[0] == '#' {
			continue
		}
		var rec record
		if err := json.Unmarshal(b, &rec); err != nil {
			return nil, nil, nil, fmt.Errorf("history line %d: %w", line, err)
		}
		switch {
		case rec.Op != nil:
			rec.Op.Index = len(ops)
			ops = append(ops, *rec.Op)
		case rec.Nemesis != nil:
			nem = append(nem, *rec.Nemesis)
		case rec.Leader != nil:
			leaders = append(leaders, *rec.Leader)
		}
	}
	return ops, nem, leaders, sc.Err()
}

// leaderAt returns who the harness believed led at time t.
func leaderAt(leaders []LeaderEvent, t int64) string {
	i := sort.Search(len(leaders), func(i int) bool { return leaders[i].Time > t })
	if i == 0 {
		return ""
	}
	return leaders[i-1].Leader
}

// faultsAt lists the faults active at time t.
func faultsAt(nem []NemesisEvent, t int64) []string {
	active := map[string]bool{}
	var order []string
	for _, ev := range nem {
		if ev.Time > t {
			break
		}
		name := ev.Fault + fmt.Sprint(ev.Targets)
		switch ev.Phase {
		case "start":
			if !active[name] {
				order = append(order, name)
			}
			active[name] = true
		case "end":
			delete(active, name)
		}
	}
	var out []string
	for _, n := range order {
		if active[n] {
			out = append(out, n)
		}
	}
	return out
}

package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/fsm"
)

// The disk-space guard refuses new writes before the data dir's filesystem
// runs out of space, instead of letting a full disk fail a log append (the
// leader steps down) or a state machine batch (the process exits). Like
// etcd's NOSPACE alarm, the node keeps serving reads and refuses writes
// with ErrDiskFull (HTTP 507, outcome failed: nothing was proposed) until
// space is freed; then writes resume by themselves.
//
//   - Every node samples the free space of its data dir's filesystem
//     (statfs) every diskCheckInterval, and the leader again before
//     proposing a write when its last sample is older than diskFreshness.
//   - Free space below Config.MinFreeDisk marks the node low; it stays low
//     until free space is back above the reserve plus a hysteresis of
//     reserve/8, so a disk hovering at the threshold does not flap.
//   - The leader refuses writes while it is low itself, or while a quorum
//     of voters report low (each node reports its own state in
//     /v1/status/node, which the failure detector already fetches): only
//     the leader proposes, so followers cannot refuse for themselves, and
//     without a quorum that can still append no write would commit once
//     they run out. A minority that is low does not stop writes.
//   - Only commands that change user data are refused. The leader's read
//     barrier (OpNoop) and the replicated node metadata (OpSetMeta,
//     OpDeleteMeta: joins, leaves, a new leader's address) are tiny and
//     keep the cluster operable. Membership changes are not refused.
const (
	diskCheckInterval = 500 * time.Millisecond
	diskFreshness     = 100 * time.Millisecond
)

// DiskStatus is a node's view of its data dir's filesystem.
type DiskStatus struct {
	FreeBytes    uint64 // available to this process (statfs Bavail)
	TotalBytes   uint64
	ReserveBytes uint64 // Config.MinFreeDisk; 0 = guard off
	// Low: free space fell below the reserve and has not yet come back
	// above reserve + hysteresis; writes are refused.
	Low       bool
	CheckedAt time.Time // zero before the first successful sample
}

// DiskFullError says writes were refused for lack of disk space, on this
// node or on a quorum of voters. Nothing was proposed.
// errors.Is(err, ErrDiskFull) matches it.
type DiskFullError struct {
	// Quorum: a quorum of voters is low (else only Nodes[0], this leader).
	Quorum bool
	Nodes  []DiskLowNode
}

// DiskLowNode is one node below its disk reserve.
type DiskLowNode struct {
	ID           string
	FreeBytes    uint64
	ReserveBytes uint64
}

func (e *DiskFullError) Error() string {
	var parts []string
	for _, n := range e.Nodes {
		parts = append(parts, fmt.Sprintf("%s: %s free, below the %s reserve", n.ID, ByteSize(n.FreeBytes).human(), ByteSize(n.ReserveBytes).human()))
	}
	if !e.Quorum && len(parts) == 1 {
		return "disk full on node " + parts[0] + "; writes refused until space is freed"
	}
	return "disk full on a quorum of voters (" + strings.Join(parts, "; ") + "); writes refused until space is freed"
}

// Is makes errors.Is(err, ErrDiskFull) true.
func (e *DiskFullError) Is(target error) bool { return target == ErrDiskFull }

// diskGuard samples the free space of one filesystem and keeps the low
// state with hysteresis. Safe for concurrent use.
type diskGuard struct {
	id      string
	path    string
	reserve uint64
	resume  uint64 // leave the low state at or above this
	statfs  func(path string) (free, total uint64, err error)
	log     *slog.Logger

	mu       sync.Mutex
	st       DiskStatus
	failing  bool // the last statfs failed (logged once)
	sampling bool // a sample is running; others use the cached state
}

func newDiskGuard(id, path string, reserve ByteSize, log *slog.Logger) *diskGuard {
	r := uint64(reserve)
	return &diskGuard{id: id, path: path, reserve: r, resume: r + r/8, statfs: statfsFree, log: log,
		st: DiskStatus{ReserveBytes: r}}
}

// statfsFree returns the bytes available to an unprivileged writer and the
// filesystem's size.
func statfsFree(path string) (free, total uint64, err error) {
	var s syscall.Statfs_t
	if err := syscall.Statfs(path, &s); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	bs := uint64(s.Bsize) //nolint:gosec // block size is positive
	return s.Bavail * bs, s.Blocks * bs, nil
}

// sample measures free space now and updates the low state, logging each
// transition once. A failed statfs keeps the previous state (logged once):
// an unknown free space neither starts nor ends a refusal.
func (g *diskGuard) sample(now time.Time) DiskStatus {
	free, total, err := g.statfs(g.path)
	g.mu.Lock()
	defer g.mu.Unlock()
	if err != nil {
		if !g.failing {
			g.failing = true
			g.log.Error("cannot measure free disk space; keeping the last known state", "path", g.path, "error", err)
		}
		return g.st
	}
	if g.failing {
		g.failing = false
		g.log.Info("measuring free disk space again", "path", g.path)
	}
	was := g.st.Low
	g.st.FreeBytes, g.st.TotalBytes, g.st.CheckedAt = free, total, now
	switch {
	case g.reserve == 0:
		g.st.Low = false
	case !was && free < g.reserve:
		g.st.Low = true
		g.log.Error("free disk space below the reserve; refusing writes until space is freed",
			"path", g.path, "free", ByteSize(free).human(), "reserve", ByteSize(g.reserve), "resume_at", ByteSize(g.resume))
	case was && free >= g.resume:
		g.st.Low = false
		g.log.Info("free disk space back above the reserve; accepting writes again",
			"path", g.path, "free", ByteSize(free).human(), "reserve", ByteSize(g.reserve))
	}
	return g.st
}

// status returns the last sample.
func (g *diskGuard) status() DiskStatus {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.st
}

// fresh returns a sample at most maxAge old, taking one if needed. While
// another caller is sampling it returns the cached state rather than queue
// behind it.
func (g *diskGuard) fresh(maxAge time.Duration) DiskStatus {
	now := time.Now()
	g.mu.Lock()
	if g.sampling || now.Sub(g.st.CheckedAt) < maxAge {
		st := g.st
		g.mu.Unlock()
		return st
	}
	g.sampling = true
	g.mu.Unlock()
	st := g.sample(now)
	g.mu.Lock()
	g.sampling = false
	g.mu.Unlock()
	return st
}

// run samples every diskCheckInterval until ctx ends.
func (g *diskGuard) run(ctx context.Context) {
	tick := time.NewTicker(diskCheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			g.sample(now)
		}
	}
}

// DiskStatus reports the last sample of this node's data dir filesystem.
func (n *Node) DiskStatus() DiskStatus { return n.disk.status() }

// checkDiskSpace refuses a command that changes user data while this
// leader, or a quorum of voters, is low on disk space.
func (n *Node) checkDiskSpace(cmd fsm.Command) error {
	switch cmd.Op {
	case fsm.OpNoop, fsm.OpSetMeta, fsm.OpDeleteMeta:
		return nil // internal and tiny: keep the cluster operable
	}
	if n.disk.reserve == 0 {
		return nil
	}
	if st := n.disk.fresh(diskFreshness); st.Low {
		return &DiskFullError{Nodes: []DiskLowNode{{ID: n.cfg.ID, FreeBytes: st.FreeBytes, ReserveBytes: st.ReserveBytes}}}
	}
	if e := n.detector.diskQuorum.Load(); e != nil {
		return e
	}
	return nil
}

// peerDisk is what a server last reported about its disk.
type peerDisk struct {
	low           bool
	free, reserve uint64
}

// noteDiskQuorum recomputes, after a stats refresh, whether a quorum of
// voters reports low disk space, and logs each transition once. A server
// counts with what it last reported, so a stats fetch that fails (a busy
// server, or this leader stepping down) neither starts nor ends a refusal;
// a server that never answered, or runs a version without the field,
// counts as not low. conf is the latest Raft configuration, read by the
// caller before it took d.mu (reading it waits for raft's main loop, which
// must not happen under the detector's lock). The caller holds d.mu.
func (d *detector) noteDiskQuorum(conf raft.Configuration) {
	voters := 0
	var low []DiskLowNode
	for _, s := range conf.Servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		voters++
		if string(s.ID) == d.n.cfg.ID {
			if st := d.n.disk.status(); st.Low {
				low = append(low, DiskLowNode{ID: string(s.ID), FreeBytes: st.FreeBytes, ReserveBytes: st.ReserveBytes})
			}
			continue
		}
		if p, ok := d.peers[s.ID]; ok && p.disk.low {
			low = append(low, DiskLowNode{ID: string(s.ID), FreeBytes: p.disk.free, ReserveBytes: p.disk.reserve})
		}
	}
	prev := d.diskQuorum.Load()
	if voters == 0 || len(low) <= voters/2 {
		if prev != nil {
			d.n.log.Info("disk space recovered on enough voters; accepting writes again", "voters", voters, "low", len(low))
			d.diskQuorum.Store(nil)
		}
		return
	}
	e := &DiskFullError{Quorum: true, Nodes: low}
	if prev == nil {
		d.n.log.Error("a quorum of voters is low on disk space; refusing writes until space is freed", "voters", voters, "error", e.Error())
	}
	d.diskQuorum.Store(e)
}

// removeStaleTemps deletes what a killed process left half-written in the
// data dir, which nothing else ever removes: raft's snapshot directories
// still named *.tmp, or without their meta.json (killed while reaping);
// hashicorp/raft's file snapshot store skips both with a warning but never
// removes them, so each kill -9 during a snapshot, a snapshot install or a
// reap leaked a state-sized directory; and spooled `PUT /v1/snapshot`
// uploads (RestoreSnapshot removes its spool file when it returns, which a
// killed process never does). It runs at Open, with the state machine's
// file lock held, before raft can create new ones.
func removeStaleTemps(dataDir, raftDir string, log *slog.Logger) {
	stale, _ := filepath.Glob(filepath.Join(raftDir, "snapshots", "*.tmp"))
	dirs, _ := filepath.Glob(filepath.Join(raftDir, "snapshots", "*"))
	for _, d := range dirs {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() || strings.HasSuffix(d, ".tmp") {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "meta.json")); errors.Is(err, os.ErrNotExist) {
			stale = append(stale, d)
		}
	}
	spools, _ := filepath.Glob(filepath.Join(dataDir, "user-restore-*.snap"))
	for _, p := range append(stale, spools...) {
		if err := os.RemoveAll(p); err != nil {
			log.Warn("remove unfinished snapshot left by a previous process", "path", p, "error", err)
			continue
		}
		log.Info("removed unfinished snapshot left by a previous process", "path", p)
	}
}

// ByteSize is a size in bytes that parses and prints with binary units:
// "0", "4096", "512KB", "64MB", "2GiB" (KB, MB, GB, TB and KiB, MiB, GiB,
// TiB are all powers of 1024). It implements pflag.Value.
type ByteSize uint64

var byteUnits = []struct {
	suffixes []string
	mult     uint64
}{
	{[]string{"TIB", "TB", "T"}, 1 << 40},
	{[]string{"GIB", "GB", "G"}, 1 << 30},
	{[]string{"MIB", "MB", "M"}, 1 << 20},
	{[]string{"KIB", "KB", "K"}, 1 << 10},
	{[]string{"B"}, 1},
}

// String prints the size exactly, in the largest unit that divides it.
func (b ByteSize) String() string {
	v := uint64(b)
	if v == 0 {
		return "0"
	}
	for _, u := range byteUnits[:4] {
		if v%u.mult == 0 {
			return strconv.FormatUint(v/u.mult, 10) + u.suffixes[1]
		}
	}
	return strconv.FormatUint(v, 10) + "B"
}

// human prints a size for messages, rounded down to whole MB (or KB).
func (b ByteSize) human() string {
	switch v := uint64(b); {
	case v >= 1<<20:
		return strconv.FormatUint(v>>20, 10) + "MB"
	case v >= 1<<10:
		return strconv.FormatUint(v>>10, 10) + "KB"
	default:
		return strconv.FormatUint(v, 10) + "B"
	}
}

// Set parses s.
func (b *ByteSize) Set(s string) error {
	num, mult := strings.ToUpper(strings.TrimSpace(s)), uint64(1)
	for _, u := range byteUnits {
		if i := slices.IndexFunc(u.suffixes, func(suf string) bool { return strings.HasSuffix(num, suf) }); i >= 0 {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffixes[i])), u.mult
			break
		}
	}
	v, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return fmt.Errorf("invalid size %q: want a whole number with an optional unit (KB, MB, GB, TB)", s)
	}
	if v > ^uint64(0)/mult {
		return fmt.Errorf("invalid size %q: too large", s)
	}
	*b = ByteSize(v * mult)
	return nil
}

// Type names the flag's value type in help output.
func (b *ByteSize) Type() string { return "size" }

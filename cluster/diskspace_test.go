package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/fsm"
)

// fakeDisk is a statfs stand-in whose free space the test sets.
type fakeDisk struct {
	mu   sync.Mutex
	free uint64
	err  error
}

func (f *fakeDisk) set(free uint64, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.free, f.err = free, err
}

func (f *fakeDisk) statfs(string) (uint64, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.free, 1 << 30, f.err
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newTestGuard(reserve ByteSize) (*diskGuard, *fakeDisk, *syncBuffer) {
	logs := &syncBuffer{}
	g := newDiskGuard("n1", "/data", reserve, slog.New(slog.NewTextHandler(logs, nil)))
	fd := &fakeDisk{}
	g.statfs = fd.statfs
	return g, fd, logs
}

const mb = 1 << 20

// TestDiskGuardHysteresis: the guard turns low below the reserve, stays low
// until free space is back at reserve + reserve/8, and logs each transition
// once; a failed statfs keeps the last state.
func TestDiskGuardHysteresis(t *testing.T) {
	g, fd, logs := newTestGuard(64 * mb)
	steps := []struct {
		free    uint64
		err     error
		wantLow bool
	}{
		{100 * mb, nil, false},
		{64 * mb, nil, false}, // at the reserve is not below it
		{64*mb - 1, nil, true},
		{10 * mb, nil, true},
		{70 * mb, nil, true},        // above the reserve, below the hysteresis band
		{72*mb - 1, nil, true},      // one byte short of reserve + reserve/8
		{0, errors.New("io"), true}, // unknown: keep the state
		{72 * mb, nil, false},
		{65 * mb, nil, false}, // back inside the band from above: still fine
		{0, errors.New("io"), false},
		{63 * mb, nil, true},
		{90 * mb, nil, false},
	}
	for i, s := range steps {
		fd.set(s.free, s.err)
		st := g.sample(time.Now())
		if st.Low != s.wantLow {
			t.Fatalf("step %d (free %d, err %v): Low %t, want %t", i, s.free, s.err, st.Low, s.wantLow)
		}
		if s.err == nil && st.FreeBytes != s.free {
			t.Errorf("step %d: FreeBytes %d, want %d", i, st.FreeBytes, s.free)
		}
		if st.ReserveBytes != 64*mb {
			t.Errorf("step %d: ReserveBytes %d, want %d", i, st.ReserveBytes, 64*mb)
		}
	}
	out := logs.String()
	for _, c := range []struct {
		msg  string
		want int
	}{
		{"free disk space below the reserve; refusing writes", 2},
		{"free disk space back above the reserve; accepting writes again", 2},
		{"cannot measure free disk space", 2},
		{"measuring free disk space again", 2},
	} {
		if got := strings.Count(out, c.msg); got != c.want {
			t.Errorf("log %q appears %d times, want %d (once per transition):\n%s", c.msg, got, c.want, out)
		}
	}
}

// TestDiskGuardOff: a zero reserve never refuses, whatever the free space,
// but still reports it.
func TestDiskGuardOff(t *testing.T) {
	g, fd, logs := newTestGuard(0)
	fd.set(0, nil)
	if st := g.sample(time.Now()); st.Low || st.CheckedAt.IsZero() {
		t.Errorf("reserve 0 with 0 bytes free: %+v, want not low and sampled", st)
	}
	fd.set(5*mb, nil)
	if st := g.status(); st.FreeBytes != 0 {
		t.Errorf("status before the next sample: FreeBytes %d, want the last sample's 0", st.FreeBytes)
	}
	if st := g.sample(time.Now()); st.FreeBytes != 5*mb {
		t.Errorf("FreeBytes %d, want %d", st.FreeBytes, 5*mb)
	}
	if logs.String() != "" {
		t.Errorf("unexpected logs with the guard off: %s", logs.String())
	}
}

// TestDiskGuardFresh: the write path re-samples only when the last sample
// is older than maxAge.
func TestDiskGuardFresh(t *testing.T) {
	g, fd, _ := newTestGuard(64 * mb)
	fd.set(100*mb, nil)
	g.sample(time.Now())
	fd.set(1*mb, nil)
	if st := g.fresh(time.Hour); st.Low {
		t.Errorf("fresh(1h) right after a sample re-sampled: %+v", st)
	}
	if st := g.fresh(0); !st.Low || st.FreeBytes != 1*mb {
		t.Errorf("fresh(0): %+v, want a new sample that is low with 1MB free", st)
	}
}

// TestCheckDiskSpace: a low leader refuses commands that change user data
// with a *DiskFullError that says which node and how much space, and lets
// the internal ones through; a quorum of low voters refuses too.
func TestCheckDiskSpace(t *testing.T) {
	g, fd, _ := newTestGuard(64 * mb)
	n := &Node{cfg: Config{ID: "n1"}, disk: g, detector: &detector{}}
	fd.set(12*mb+12345, nil)
	g.sample(time.Now())

	err := n.checkDiskSpace(fsm.Command{Op: fsm.OpSet, Key: "k", Value: []byte("v")})
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("OpSet on a low leader: %v, want ErrDiskFull", err)
	}
	want := "disk full on node n1: 12MB free, below the 64MB reserve; writes refused until space is freed"
	if err.Error() != want {
		t.Errorf("message %q, want %q", err.Error(), want)
	}
	for _, op := range []fsm.Op{fsm.OpDelete, fsm.OpCAS, fsm.OpCAD, fsm.OpDeletePrefix, fsm.OpTxn} {
		if err := n.checkDiskSpace(fsm.Command{Op: op, Key: "k"}); !errors.Is(err, ErrDiskFull) {
			t.Errorf("op %d on a low leader: %v, want ErrDiskFull", op, err)
		}
	}
	for _, op := range []fsm.Op{fsm.OpNoop, fsm.OpSetMeta, fsm.OpDeleteMeta} {
		if err := n.checkDiskSpace(fsm.Command{Op: op, Key: "node/http/n1"}); err != nil {
			t.Errorf("internal op %d on a low leader: %v, want nil", op, err)
		}
	}

	fd.set(200*mb, nil)
	g.sample(time.Now())
	if err := n.checkDiskSpace(fsm.Command{Op: fsm.OpSet, Key: "k"}); err != nil {
		t.Errorf("after space returned: %v, want nil", err)
	}
	q := &DiskFullError{Quorum: true, Nodes: []DiskLowNode{{"n2", 3 * mb, 64 * mb}, {"n3", 10 * mb, 32 * mb}}}
	n.detector.diskQuorum.Store(q)
	err = n.checkDiskSpace(fsm.Command{Op: fsm.OpSet, Key: "k"})
	wantQ := "disk full on a quorum of voters (n2: 3MB free, below the 64MB reserve; n3: 10MB free, below the 32MB reserve); writes refused until space is freed"
	if !errors.Is(err, ErrDiskFull) || err.Error() != wantQ {
		t.Errorf("with a low quorum: %v, want %q", err, wantQ)
	}
}

func TestByteSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want ByteSize
		str  string
	}{
		{"0", 0, "0"},
		{"4096", 4096, "4KB"},
		{"100", 100, "100B"},
		{"512KB", 512 << 10, "512KB"},
		{"64MB", 64 << 20, "64MB"},
		{"64mb", 64 << 20, "64MB"},
		{"64M", 64 << 20, "64MB"},
		{"64MiB", 64 << 20, "64MB"},
		{" 2 GiB ", 2 << 30, "2GB"},
		{"1TB", 1 << 40, "1TB"},
		{"1536MB", 1536 << 20, "1536MB"},
		{"10B", 10, "10B"},
	} {
		var b ByteSize
		if err := b.Set(c.in); err != nil {
			t.Errorf("Set(%q): %v", c.in, err)
			continue
		}
		if b != c.want || b.String() != c.str {
			t.Errorf("Set(%q) = %d %q, want %d %q", c.in, b, b.String(), c.want, c.str)
		}
	}
	for _, bad := range []string{"", "MB", "-1MB", "1.5GB", "12XB", "99999999999TB"} {
		var b ByteSize
		if err := b.Set(bad); err == nil {
			t.Errorf("Set(%q) = %d, want an error", bad, b)
		}
	}
	if got := fmt.Sprint(ByteSize(12*mb + 5).human()); got != "12MB" {
		t.Errorf("human(12MB+5) = %q, want 12MB", got)
	}
}

// TestRemoveStaleTemps: unfinished raft snapshot dirs and spooled restore
// uploads left by a killed process are removed; finished snapshots and
// other files are kept.
func TestRemoveStaleTemps(t *testing.T) {
	data := t.TempDir()
	raftDir := filepath.Join(data, "raft")
	mk := func(p string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	gone := []string{
		filepath.Join(raftDir, "snapshots", "3-100-1700000000000.tmp", "state.bin"),
		filepath.Join(raftDir, "snapshots", "4-200-1700000000001.tmp", "meta.json"),
		filepath.Join(data, "user-restore-12345.snap"),
		filepath.Join(raftDir, "snapshots", "2-40-1680000000000", "state.bin"), // killed while reaped: no meta.json
	}
	kept := []string{
		filepath.Join(raftDir, "snapshots", "2-50-1690000000000", "state.bin"),
		filepath.Join(raftDir, "snapshots", "2-50-1690000000000", "meta.json"),
		filepath.Join(raftDir, "raft.db"),
		filepath.Join(data, "fsm", "state.db"),
	}
	for _, p := range append(slices.Clone(gone), kept...) {
		mk(p)
	}
	var logs syncBuffer
	removeStaleTemps(data, raftDir, slog.New(slog.NewTextHandler(&logs, nil)))
	for _, p := range []string{filepath.Dir(gone[0]), filepath.Dir(gone[1]), gone[2], filepath.Dir(gone[3])} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still exists (err %v)", p, err)
		}
	}
	for _, p := range kept {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was removed: %v", p, err)
		}
	}
	if got := strings.Count(logs.String(), "removed unfinished snapshot"); got != 4 {
		t.Errorf("%d removals logged, want 4:\n%s", got, logs.String())
	}
}

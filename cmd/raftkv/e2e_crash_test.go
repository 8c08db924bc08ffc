package main

// Crash-safety loops with real raftkv processes: kill -9 at random moments
// (seeded; the seed is logged and accepted back with -args
// -recovery.seed=N) during writes, during constant snapshotting, while a
// follower installs a snapshot, while `PUT /v1/snapshot` restores the
// cluster, and while a server joins or leaves. After every loop each killed
// node is restarted, all nodes are voters again with one leader, every
// node's state machine has the same digest, and no acknowledged write is
// lost (loadHistory.verify, or an exact model of the expected state).
//
// The default iteration counts keep the file under ~3 minutes on a quiet
// 2-core machine. RAFTKV_CRASH_SOAK=1 multiplies them by 5 (=N: by N):
//
//	RAFTKV_CRASH_SOAK=1 go test -tags hashicorpmetrics -count=1 -timeout 60m -run TestCrash -v ./cmd/raftkv/

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/httpapi/wire"
)

// crashIters scales a loop's iteration count for RAFTKV_CRASH_SOAK.
func crashIters(t *testing.T, n int) int {
	t.Helper()
	v := os.Getenv("RAFTKV_CRASH_SOAK")
	if v == "" || v == "0" {
		return n
	}
	f, err := strconv.Atoi(v)
	if err != nil || f < 1 {
		t.Fatalf("RAFTKV_CRASH_SOAK=%q: want 1 (x5) or a multiplier", v)
	}
	if f == 1 {
		f = 5
	}
	t.Logf("soak: %d iterations instead of %d", n*f, n)
	return n * f
}

// randDur is a random duration in [lo, hi).
func randDur(r *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(r.Int64N(int64(hi-lo)))
}

// pause waits d: the random moment of a kill, never a stand-in for a
// condition.
func pause(d time.Duration) { <-time.After(d) }

// crashTally counts what a loop did, for the report.
type crashTally struct {
	iterations, kills, leaderKills int
	snapshots, restores            uint64 // summed over the processes killed and the final ones
}

// killNode SIGKILLs n, first adding its snapshot counters (per process) to
// the tally when it still answers. A node already down is left alone.
func (ct *crashTally) killNode(t *testing.T, n *e2eNode, wasLeader bool) {
	t.Helper()
	if !n.running() {
		return
	}
	if st, err := nodeStatus(n); err == nil {
		ct.snapshots += st.SnapshotsTaken
		ct.restores += st.Restores
	}
	n.kill(t)
	ct.kills++
	if wasLeader {
		ct.leaderKills++
	}
}

// whole waits until every node of want runs, sees exactly want as voters
// with one leader, and every follower has applied the leader's commit
// index; it returns the leader.
func whole(t *testing.T, c *e2eCluster, want []*e2eNode, timeout time.Duration) *e2eNode {
	t.Helper()
	for _, n := range want {
		if !n.running() {
			t.Fatalf("%s is not running", n.id)
		}
	}
	c.waitVoters(t, want, timeout)
	leader := c.leader(t, want, timeout)
	for _, n := range want {
		if n != leader {
			waitCaughtUp(t, n, leader, timeout)
		}
	}
	return leader
}

// converged checks the end of a loop: every node restarted and a voter
// with one leader, the same digest everywhere (writes stopped). It returns
// the leader.
func converged(t *testing.T, c *e2eCluster, nodes []*e2eNode) *e2eNode {
	t.Helper()
	for _, n := range nodes {
		if !n.running() {
			c.restart(t, n)
		}
	}
	leader := whole(t, c, nodes, 60*time.Second)
	var d wire.Digest
	for _, n := range nodes {
		if n != leader {
			d = waitSameDigest(t, n, leader, 30*time.Second)
		}
	}
	t.Logf("converged: %d voters, leader %s, same digest on every node (applied index %d, %d keys)", len(nodes), leader.id, d.AppliedIndex, d.Keys)
	return leader
}

// report logs the tally, adding the counters of the processes still running.
func (ct *crashTally) report(t *testing.T, c *e2eCluster, what string, start time.Time) {
	t.Helper()
	for _, n := range c.nodes {
		if st, err := nodeStatus(n); err == nil && n.running() {
			ct.snapshots += st.SnapshotsTaken
			ct.restores += st.Restores
		}
	}
	t.Logf("%s: %d iterations, %d kills (%d of a leader), %d snapshots taken and %d restored by the processes, in %s",
		what, ct.iterations, ct.kills, ct.leaderKills, ct.snapshots, ct.restores, ms(time.Since(start)))
}

// killUnderLoad is the loop of kill -9 of a random node (leader or
// follower) at a random moment under write load, restarting it each time.
func killUnderLoad(t *testing.T, c *e2eCluster, r *rand.Rand, iters int, ct *crashTally) {
	t.Helper()
	for i := range iters {
		leader := whole(t, c, c.nodes, 30*time.Second)
		victim := c.nodes[r.IntN(len(c.nodes))]
		delay, down := randDur(r, 0, 800*time.Millisecond), randDur(r, 0, 1500*time.Millisecond)
		pause(delay)
		isLeader := false
		if st, err := nodeStatus(victim); err == nil && st.State == "Leader" {
			isLeader = true
		}
		ct.killNode(t, victim, isLeader)
		pause(down)
		c.restart(t, victim)
		ct.iterations++
		t.Logf("iteration %d: kill -9 %s (leader %t; leader before was %s) %s into the iteration, restarted after %s",
			i+1, victim.id, isLeader, leader.id, ms(delay), ms(down))
	}
}

// TestCrashKillDuringWrites: kill -9 a random node at a random moment under
// a write load through every node, restart it, repeat.
func TestCrashKillDuringWrites(t *testing.T) {
	start := time.Now()
	c := startRecoveryCluster(t, 3)
	r := testRand(t)
	h := newLoadHistory()
	stopLoad := runLoad(h, c.nodes, 2, 20)
	t.Cleanup(stopLoad)
	ct := &crashTally{}
	killUnderLoad(t, c, r, crashIters(t, 8), ct)
	stopLoad()
	leader := converged(t, c, c.nodes)
	h.verify(t, leader)
	ct.report(t, c, "kill during writes", start)
}

// TestCrashKillDuringSnapshots: the same loop with a snapshot every 64
// entries, checked every 50ms, and only 64 entries kept after it, so nodes
// are killed while taking snapshots and restarted nodes often need one.
func TestCrashKillDuringSnapshots(t *testing.T) {
	start := time.Now()
	c := startRecoveryCluster(t, 3, "--snapshot-threshold", "64", "--snapshot-interval", "50ms", "--trailing-logs", "64")
	r := testRand(t)
	h := newLoadHistory()
	stopLoad := runLoad(h, c.nodes, 2, 20)
	t.Cleanup(stopLoad)
	ct := &crashTally{}
	iters := crashIters(t, 8)
	killUnderLoad(t, c, r, iters, ct)
	stopLoad()
	leader := converged(t, c, c.nodes)
	h.verify(t, leader)
	ct.report(t, c, "kill during snapshots", start)
	if ct.snapshots < uint64(iters) {
		t.Errorf("%d snapshots taken over %d iterations: the loop did not snapshot all the time", ct.snapshots, iters)
	}
}

// logSize is the current length of n's log file, to look for lines
// written after it.
func logSize(t *testing.T, n *e2eNode) int64 {
	t.Helper()
	fi, err := os.Stat(n.logPath)
	if err != nil {
		t.Fatalf("stat log of %s: %v", n.id, err)
	}
	return fi.Size()
}

// logHasLine reports whether a line of n's log past offset contains all
// of parts.
func logHasLine(t *testing.T, n *e2eNode, offset int64, parts ...string) bool {
	t.Helper()
	f, err := os.Open(n.logPath)
	if err != nil {
		t.Fatalf("open log of %s: %v", n.id, err)
	}
	data, err := io.ReadAll(io.NewSectionReader(f, offset, 1<<40))
	f.Close()
	if err != nil {
		t.Fatalf("read log of %s: %v", n.id, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(line, p) }) {
			return true
		}
	}
	return false
}

// waitLogLine polls n's log past offset every 2ms until a line contains all
// of parts.
func waitLogLine(t *testing.T, n *e2eNode, offset int64, timeout time.Duration, parts ...string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !logHasLine(t, n, offset, parts...) {
		if time.Now().After(deadline) {
			t.Fatalf("after %s no line of %s's log contains %q", timeout, n.id, parts)
		}
		pause(2 * time.Millisecond) // poll interval
	}
}

// logLineBefore is waitLogLine that gives up, returning false, once done
// is closed and the log still has no such line.
func logLineBefore(t *testing.T, n *e2eNode, offset int64, done <-chan struct{}, parts ...string) bool {
	t.Helper()
	for {
		select {
		case <-done:
			return logHasLine(t, n, offset, parts...)
		default:
		}
		if logHasLine(t, n, offset, parts...) {
			return true
		}
		pause(2 * time.Millisecond) // poll interval
	}
}

// bigValues returns n keys prefix/00000.. with distinct values of size bytes.
func bigValues(prefix string, n, size int) map[string]string {
	kv := make(map[string]string, n)
	for i := range n {
		head := fmt.Sprintf("%s-%d-", prefix, i)
		kv[fmt.Sprintf("%s/%05d", prefix, i)] = head + strings.Repeat("v", max(0, size-len(head)))
	}
	return kv
}

// checkState fails t unless n's local state machine (?stale) holds exactly
// want. It lists one top-level prefix at a time: the whole state can be
// over the API's 32 MiB answer limit.
func checkState(t *testing.T, n *e2eNode, want map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := n.client(30 * time.Second)
	prefixes, err := cl.Keys(ctx, "", "/", client.Stale)
	if err != nil {
		t.Fatalf("list top-level prefixes on %s: %v", n.id, err)
	}
	var pairs []wire.KVPair
	for _, p := range prefixes {
		ps, err := cl.List(ctx, p, client.Stale)
		if err != nil {
			t.Fatalf("list %s on %s: %v", p, n.id, err)
		}
		pairs = append(pairs, ps...)
	}
	got := make(map[string]string, len(pairs))
	for _, p := range pairs {
		got[p.Key] = string(p.Value)
	}
	bad := 0
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			if bad++; bad <= 5 {
				t.Errorf("%s: acknowledged %s lost or changed: present %t, value %.40q, want %.40q", n.id, k, ok, g, v)
			}
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			if bad++; bad <= 10 {
				t.Errorf("%s: unexpected key %s", n.id, k)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%s: %d keys differ from the %d expected", n.id, bad, len(want))
	}
}

// TestCrashKillDuringRestore kills (1) a follower right after the leader
// starts sending it a snapshot, several times, and (2) the leader or a
// follower while `PUT /v1/snapshot` restores the cluster from a backup. The
// expected state is modelled exactly: after each restore either all writes
// made after the backup are gone (the restore took effect; always when it
// answered 200) or all are there.
func TestCrashKillDuringRestore(t *testing.T) {
	start := time.Now()
	c := startRecoveryCluster(t, 3, "--snapshot-threshold", "32", "--snapshot-interval", "50ms", "--trailing-logs", "32")
	r := testRand(t)
	ctx := context.Background()
	ct := &crashTally{}
	state := map[string]string{} // every acknowledged key, as it must read
	write := func(kv map[string]string, via []*e2eNode) {
		t.Helper()
		putAll(t, via, kv, 8, 60*time.Second)
		for k, v := range kv {
			state[k] = v
		}
	}

	// (1) A follower killed while it installs the leader's snapshot.
	leader := whole(t, c, c.nodes, 30*time.Second)
	f := c.others(leader)[0]
	installs := crashIters(t, 4)
	stages := map[string]int{}
	for i := range installs {
		ct.killNode(t, f, false) // a no-op after the first round: f is down
		live := c.others(f)
		before, err := nodeStatus(leader)
		if err != nil {
			t.Fatal(err)
		}
		// 400 writes of 4KB from 8 writers: at least 50 log entries however
		// the leader coalesces them, past the 32 trailing entries and the
		// snapshot threshold, and a snapshot of a few MB that takes a while
		// to send and restore.
		write(bigValues(fmt.Sprintf("install%d", i), 400, 4<<10), live)
		leader = c.leader(t, live, 10*time.Second)
		waitFor(t, 10*time.Second, "a snapshot on the leader since the kill", func() error {
			st, err := nodeStatus(leader)
			if err != nil {
				return err
			}
			if st.SnapshotsTaken <= before.SnapshotsTaken && leader.id == before.ID {
				return fmt.Errorf("%s SnapshotsTaken still %d", leader.id, st.SnapshotsTaken)
			}
			return nil
		})
		off, foff := logSize(t, leader), logSize(t, f)
		c.restart(t, f)
		waitLogLine(t, leader, off, 30*time.Second, `msg="installing snapshot on"`, "peer="+f.id+" ")
		delay := randDur(r, 0, 60*time.Millisecond) // an install of a few MB takes ~50-100ms
		pause(delay)
		ct.killNode(t, f, false)
		ct.iterations++
		stage := installStage(t, f, foff)
		stages[stage]++
		t.Logf("install %d: leader %s started sending %s a snapshot; killed %s %s later, %s", i+1, leader.id, f.id, f.id, ms(delay), stage)
	}
	c.restart(t, f)
	leader = converged(t, c, c.nodes)
	for _, n := range c.nodes {
		checkState(t, n, state)
	}
	tmps, err := filepath.Glob(filepath.Join(f.dataDir, "raft", "snapshots", "*.tmp"))
	if err != nil {
		t.Fatal(err)
	}
	if len(tmps) > 1 { // one may be a snapshot in progress
		t.Errorf("%s keeps %d unfinished snapshot dirs after its restarts, want at most 1: %v", f.id, len(tmps), tmps)
	}
	t.Logf("snapshot installs: %s killed %d times after the leader began sending it a snapshot (%v), then caught up; %d acknowledged keys on every node",
		f.id, installs, stages, len(state))

	// (2) Kill during PUT /v1/snapshot: the leader right after it copied
	// the backup into its snapshot store or right after it restored it
	// (before or while its followers install it), or a follower right
	// after the leader began sending it the restored snapshot. Round 0
	// kills nothing.
	outcomes := map[string]int{}
	restores := crashIters(t, 3)
	for i := 0; i <= restores; i++ {
		leader = whole(t, c, c.nodes, 30*time.Second)
		write(bigValues(fmt.Sprintf("prebackup%d", i), 100, 4<<10), c.nodes)
		var buf bytes.Buffer
		sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		_, _, err := leader.client(60*time.Second).SaveSnapshot(sctx, &buf, false)
		cancel()
		if err != nil {
			t.Fatalf("save a backup through %s: %v", leader.id, err)
		}
		backup, backupState := buf.Bytes(), maps.Clone(state)
		afterPrefix := fmt.Sprintf("afterbackup%d", i)
		after := numbered(afterPrefix, 50)
		write(after, c.nodes)

		victim, at := leader, []string{`msg="copied to local snapshot"`}
		switch r.IntN(3) {
		case 0:
			victim = c.others(leader)[r.IntN(2)]
			at = []string{`msg="installing snapshot on"`, "peer=" + victim.id + " "}
		case 1:
			at = []string{`msg="restored user snapshot"`}
		}
		via := c.nodes[r.IntN(3)]
		delay := randDur(r, 0, 50*time.Millisecond)
		off := logSize(t, leader)
		var rerr error
		done := make(chan struct{})
		go func() { // ends when the restore answers, or at its 60s timeout
			defer close(done)
			rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			_, rerr = via.client(60*time.Second).RestoreSnapshot(rctx, bytes.NewReader(backup), int64(len(backup)))
		}()
		wasLeader := victim == leader
		when := "no kill"
		if i > 0 {
			when = "after it answered"
			if logLineBefore(t, leader, off, done, at...) {
				when = fmt.Sprintf("%s after %s", ms(delay), strings.Join(at, " "))
				pause(delay)
			}
			ct.killNode(t, victim, wasLeader)
		}
		<-done
		if i > 0 {
			c.restart(t, victim)
			ct.iterations++
		}
		leader = converged(t, c, c.nodes)

		// Either the restore took effect (every key written after the
		// backup is gone) or not (all are there): never a mix.
		pairs, err := leader.client(10*time.Second).List(ctx, afterPrefix+"/", client.Default)
		if err != nil {
			t.Fatalf("list %s/: %v", afterPrefix, err)
		}
		switch len(pairs) {
		case 0:
			state = backupState
		case len(after):
			if rerr == nil {
				t.Errorf("restore %d answered success, but the %d writes made after the backup are still there", i, len(after))
			}
			state = backupState
			maps.Copy(state, after)
		default:
			t.Fatalf("restore %d: %d of the %d writes made after the backup survived: a partial restore", i, len(pairs), len(after))
		}
		for _, n := range c.nodes {
			checkState(t, n, state)
		}
		outcome := fmt.Sprintf("answered %s, took effect %t", map[bool]string{true: "ok", false: "an error"}[rerr == nil], len(pairs) == 0)
		outcomes[outcome]++
		t.Logf("restore %d of a %d-byte backup through %s: killed %s (leader %t) %s: %s (%v); %d keys as expected on every node",
			i, len(backup), via.id, victim.id, wasLeader, when, outcome, rerr, len(state))
	}
	t.Logf("restores under kill -9: %v", outcomes)
	ct.report(t, c, "kill during snapshot install and restore", start)
}

func errOrOK(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// installStage reports how far n's log (past offset) shows a snapshot
// install getting before n was killed.
func installStage(t *testing.T, n *e2eNode, offset int64) string {
	t.Helper()
	switch {
	case logHasLine(t, n, offset, `msg="Installed remote snapshot"`):
		return "after the install completed"
	case logHasLine(t, n, offset, `msg="fsm restored from snapshot"`):
		return "after the state machine restore, before raft recorded it"
	case logHasLine(t, n, offset, `msg="copied to local snapshot"`):
		return "while restoring the state machine"
	default:
		return "while receiving the snapshot"
	}
}

// addNode creates a node that is not started yet, with the cluster's flags,
// and adds it to the cluster (so cleanup stops it and prints its log).
func addNode(t *testing.T, c *e2eCluster, id string) *e2eNode {
	t.Helper()
	dir := t.TempDir()
	ports := freePorts(t, 2)
	n := &e2eNode{id: id, dataDir: dir + "/data", httpAddr: ports[0], raftAddr: ports[1],
		logPath: dir + "/" + id + ".log", bin: c.nodes[0].bin, flags: c.nodes[0].flags}
	c.nodes = append(c.nodes, n)
	return n
}

// ensureMember makes x a member again after a leave that may or may not
// have happened: an explicit join, as an operator would do.
func ensureMember(t *testing.T, c *e2eCluster, x *e2eNode) {
	t.Helper()
	waitFor(t, 30*time.Second, x.id+" to be a member", func() error {
		// A leave that did not happen can leave x leading the cluster: then
		// it is a member, and no other node is leader to ask.
		if x.running() {
			if s, err := x.client(time.Second).Status(context.Background()); err == nil && s.State == "Leader" {
				return nil
			}
		}
		l := c.leader(t, c.others(x), 15*time.Second)
		rc, err := nodeConfiguration(l)
		if err != nil {
			return err
		}
		for _, s := range rc.Servers {
			if s.ID == x.id {
				return nil
			}
		}
		jctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err = l.client(10*time.Second).Join(jctx, wire.JoinRequest{ID: x.id, RaftAddr: x.raftAddr, HTTPAddr: x.httpAddr})
		return fmt.Errorf("%s not in the configuration; asked to join it: %v", x.id, err)
	})
}

// TestCrashKillDuringMembershipChange: kill the leader or the joining
// server while a 4th server joins (with a fresh data dir each time), and
// the leader or the leaving server while a server leaves; under write load.
func TestCrashKillDuringMembershipChange(t *testing.T) {
	start := time.Now()
	c := startRecoveryCluster(t, 3)
	r := testRand(t)
	h := newLoadHistory()
	stopLoad := runLoad(h, slices.Clone(c.nodes), 1, 20)
	t.Cleanup(stopLoad)
	ct := &crashTally{}
	n4 := addNode(t, c, "n4")
	three := slices.Clone(c.nodes[:3])

	joins := crashIters(t, 3)
	for i := range joins {
		leader := whole(t, c, three, 30*time.Second)
		if err := os.RemoveAll(n4.dataDir); err != nil {
			t.Fatalf("wipe %s: %v", n4.dataDir, err)
		}
		c.restart(t, n4) // fresh: --join every other node
		victim := leader
		if r.IntN(2) == 0 {
			victim = n4
		}
		// Joining as a non-voter, catching up and promotion (1s of
		// stabilization) take about 1.5s: kill somewhere in there.
		delay := randDur(r, 0, 2*time.Second)
		pause(delay)
		var phase string
		if rc, err := nodeConfiguration(leader); err == nil {
			phase = "not yet added"
			for _, s := range rc.Servers {
				if s.ID == n4.id {
					phase = map[bool]string{false: "non-voter", true: "voter"}[s.Voter]
				}
			}
		}
		ct.killNode(t, victim, victim == leader)
		c.restart(t, victim)
		ct.iterations++
		whole(t, c, c.nodes, 60*time.Second)
		t.Logf("join %d: killed %s (leader %t) %s after %s started joining (%s was %s); all 4 voters again",
			i+1, victim.id, victim == leader, ms(delay), n4.id, n4.id, phase)
		if i < joins-1 {
			// Take n4 out again for the next join.
			lctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			err := n4.client(15*time.Second).Leave(lctx, "")
			cancel()
			if err != nil {
				t.Fatalf("leave %s: %v", n4.id, err)
			}
			c.waitVoters(t, three, 15*time.Second)
			n4.stop(t)
		}
	}

	leaves := crashIters(t, 3)
	for i := range leaves {
		leader := whole(t, c, c.nodes, 30*time.Second)
		x := c.nodes[r.IntN(len(c.nodes))]
		victim := leader
		if r.IntN(2) == 0 {
			victim = x
		}
		delay := randDur(r, 0, 200*time.Millisecond) // a leave takes ~100ms
		res := make(chan error, 1)
		go func() { // ends when the leave answers (or its 15s timeout)
			lctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			res <- x.client(15*time.Second).Leave(lctx, "")
		}()
		pause(delay)
		ct.killNode(t, victim, victim == leader)
		lerr := <-res
		c.restart(t, victim)
		ct.iterations++
		ensureMember(t, c, x)
		whole(t, c, c.nodes, 60*time.Second)
		t.Logf("leave %d: %s leaving (leader %t), killed %s (leader %t) %s after the leave began; leave answered %s; all 4 voters again",
			i+1, x.id, x == leader, victim.id, victim == leader, ms(delay), errOrOK(lerr))
	}
	stopLoad()
	leader := converged(t, c, c.nodes)
	h.verify(t, leader)
	ct.report(t, c, "kill during membership changes", start)
}

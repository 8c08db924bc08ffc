package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/internal/testcluster"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func set(key, val string) fsm.Command {
	return fsm.Command{Op: fsm.OpSet, Key: key, Value: []byte(val)}
}

// applyOnLeader retries until some leader accepts cmd.
func applyOnLeader(t *testing.T, c *testcluster.Cluster, cmd fsm.Command) fsm.Result {
	t.Helper()
	var res fsm.Result
	err := testcluster.Poll(10*time.Second, func() error {
		l := c.Leader()
		if l == nil {
			return errors.New("no leader")
		}
		var err error
		res, err = l.Node.Apply(ctxT(t, 5*time.Second), cmd)
		return err
	})
	if err != nil {
		t.Fatalf("apply %v: %v", cmd.Op, err)
	}
	return res
}

func TestWriteOnLeaderReadEverywhere(t *testing.T) {
	c := testcluster.Start(t, 3)
	leader := c.WaitLeader(5 * time.Second)
	res, err := leader.Node.Apply(ctxT(t, 5*time.Second), set("a", "1"))
	if err != nil || !res.OK {
		t.Fatalf("apply on leader: res=%+v err=%v", res, err)
	}

	// A follower refuses, naming the leader: the write certainly did not happen.
	f := c.Follower()
	_, err = f.Node.Apply(ctxT(t, 5*time.Second), set("b", "2"))
	var nle *cluster.NotLeaderError
	if !errors.As(err, &nle) || !errors.Is(err, cluster.ErrNotLeader) {
		t.Fatalf("apply on follower: got %v, want a NotLeaderError", err)
	}
	if nle.LeaderID != leader.ID || nle.LeaderHTTPAddr != leader.HTTPAddr {
		t.Fatalf("NotLeaderError names %s at %s, want %s at %s", nle.LeaderID, nle.LeaderHTTPAddr, leader.ID, leader.HTTPAddr)
	}

	// A linearizable read on the leader, and read-index on each follower.
	idx, err := leader.Node.ReadIndex(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatalf("read index: %v", err)
	}
	if idx < res.Index {
		t.Fatalf("read index %d is below the acknowledged write at %d", idx, res.Index)
	}
	for _, nd := range c.Nodes {
		if err := nd.Node.WaitApplied(ctxT(t, 5*time.Second), idx); err != nil {
			t.Fatalf("%s: wait applied %d: %v", nd.ID, idx, err)
		}
		e, ok, err := nd.Node.Store().Get("a")
		if err != nil || !ok || string(e.Value) != "1" {
			t.Fatalf("%s: get a = %q, %v, %v; want 1", nd.ID, e.Value, ok, err)
		}
	}
	// ReadIndex is refused on followers.
	if _, err := f.Node.ReadIndex(ctxT(t, time.Second)); !errors.Is(err, cluster.ErrNotLeader) {
		t.Fatalf("read index on follower: got %v, want ErrNotLeader", err)
	}
}

func TestConcurrentReadsShareRounds(t *testing.T) {
	c := testcluster.Start(t, 3)
	leader := c.WaitLeader(5 * time.Second)
	w := applyOnLeader(t, c, set("k", "v"))
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := 0; i < 200; i++ {
		wg.Go(func() {
			idx, err := leader.Node.ReadIndex(ctxT(t, 5*time.Second))
			if err == nil && idx < w.Index {
				err = fmt.Errorf("read index %d below write %d", idx, w.Index)
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestCASExactlyOneWinner(t *testing.T) {
	c := testcluster.Start(t, 3)
	base := applyOnLeader(t, c, set("cas", "start"))
	leader := c.WaitLeader(5 * time.Second)
	const n = 32
	var wg sync.WaitGroup
	wins := make(chan int, n)
	for i := 0; i < n; i++ {
		wg.Go(func() {
			res, err := leader.Node.Apply(ctxT(t, 5*time.Second), fsm.Command{Op: fsm.OpCAS, Key: "cas", Value: []byte(fmt.Sprint(i)), Index: base.Index})
			if err != nil {
				t.Errorf("cas %d: %v", i, err)
				return
			}
			if res.OK {
				wins <- i
			}
		})
	}
	wg.Wait()
	close(wins)
	var winners []int
	for w := range wins {
		winners = append(winners, w)
	}
	if len(winners) != 1 {
		t.Fatalf("got %d CAS winners %v, want exactly 1", len(winners), winners)
	}
	e, _, _ := leader.Node.Store().Get("cas")
	if string(e.Value) != fmt.Sprint(winners[0]) {
		t.Fatalf("stored %q, want the winner's %d", e.Value, winners[0])
	}
}

func TestLeaderLossNewLeaderWritesContinue(t *testing.T) {
	c := testcluster.Start(t, 3)
	old := c.WaitLeader(5 * time.Second)
	applyOnLeader(t, c, set("before", "x"))
	c.StopNode(c.Index(old))
	nl := c.WaitLeader(5 * time.Second)
	if nl == old {
		t.Fatalf("leader is still the stopped node %s", old.ID)
	}
	res := applyOnLeader(t, c, set("after", "y"))
	if !res.OK {
		t.Fatalf("write after failover: %+v", res)
	}
	if _, err := nl.Node.LinearizableBarrier(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"before", "after"} {
		if _, ok, err := nl.Node.Store().Get(k); !ok || err != nil {
			t.Fatalf("new leader lost %q (ok=%v err=%v)", k, ok, err)
		}
	}
}

func TestFollowerRestartCatchesUp(t *testing.T) {
	c := testcluster.Start(t, 3)
	f := c.Follower()
	fi := c.Index(f)
	c.StopNode(fi)
	var last fsm.Result
	for i := 0; i < 100; i++ {
		last = applyOnLeader(t, c, set(fmt.Sprintf("k%03d", i), "v"))
	}
	c.StartNode(fi)
	if err := f.Node.WaitApplied(ctxT(t, 10*time.Second), last.Index); err != nil {
		t.Fatalf("restarted follower did not catch up: %v", err)
	}
	keys, err := f.Node.Store().Keys("k", "")
	if err != nil || len(keys) != 100 {
		t.Fatalf("restarted follower has %d keys (err %v), want 100", len(keys), err)
	}
}

func TestFollowerCatchesUpBySnapshot(t *testing.T) {
	c := testcluster.Start(t, 3, func(cfg *cluster.Config) {
		cfg.SnapshotThreshold = 64
		cfg.SnapshotInterval = 50 * time.Millisecond
		cfg.TrailingLogs = 16
	})
	f := c.Follower()
	fi := c.Index(f)
	c.StopNode(fi)
	var last fsm.Result
	for i := 0; i < 500; i++ {
		last = applyOnLeader(t, c, set(fmt.Sprintf("s%04d", i), "v"))
	}
	// Wait until the leader has compacted past what the follower has.
	leader := c.WaitLeader(5 * time.Second)
	if err := testcluster.Poll(10*time.Second, func() error {
		if s := leader.Node.Status(); s.SnapshotsTaken == 0 {
			return errors.New("leader has not snapshotted yet")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	c.StartNode(fi)
	if err := f.Node.WaitApplied(ctxT(t, 15*time.Second), last.Index); err != nil {
		t.Fatalf("follower did not catch up: %v", err)
	}
	if s := f.Node.Status(); s.Restores == 0 {
		t.Fatalf("follower caught up without a snapshot install (status %+v); want an install", s)
	}
	fd, err := f.Node.Store().Digest()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leader.Node.LinearizableBarrier(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := testcluster.Poll(10*time.Second, func() error {
		ld, err := leader.Node.Store().Digest()
		if err != nil {
			return err
		}
		fd, err = f.Node.Store().Digest()
		if err != nil {
			return err
		}
		if ld.AppliedIndex != fd.AppliedIndex || ld.Digest != fd.Digest {
			return fmt.Errorf("leader digest %+v, follower %+v", ld, fd)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if fd.Keys != 500 {
		t.Fatalf("follower has %d keys, want 500", fd.Keys)
	}
}

func TestOutcomeOfBadCommand(t *testing.T) {
	c := testcluster.Start(t, 1)
	l := c.WaitLeader(5 * time.Second)
	_, err := l.Node.Apply(ctxT(t, time.Second), fsm.Command{Op: fsm.OpSet, Key: ""})
	if !errors.Is(err, cluster.ErrBadRequest) {
		t.Fatalf("empty key: got %v, want ErrBadRequest", err)
	}
}

// deadAddr returns a loopback address where nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestJoinValidation: malformed join requests, and joins that would take a
// live member's place (its ID at another address, its address under another
// ID, the leader's address), are refused with ErrBadRequest (plus
// ErrMemberConflict for the latter) and change nothing. A member that is
// really gone can be moved or have its address taken over, and keeps its
// suffrage: a moved non-voter is not promoted, a moved voter stays a voter.
func TestJoinValidation(t *testing.T) {
	c := testcluster.Start(t, 3)
	l := c.WaitLeader(5 * time.Second)
	config := func() map[string]cluster.Server {
		t.Helper()
		servers, _, err := l.Node.Configuration()
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]cluster.Server{}
		for _, s := range servers {
			s.Leader = false // leadership is not what a join may change
			m[s.ID] = s
		}
		return m
	}
	join := func(req cluster.JoinRequest) error {
		return l.Node.Join(ctxT(t, 10*time.Second), req)
	}
	before := config()
	f := c.Follower()
	live := before[f.ID]
	leaderAddr := before[l.ID].RaftAddr
	free := deadAddr(t)

	for _, req := range []cluster.JoinRequest{
		{RaftAddr: free},
		{ID: "x"},
		{ID: "x", RaftAddr: "garbage"},
		{ID: "x", RaftAddr: "127.0.0.1"},
		{ID: "x", RaftAddr: "127.0.0.1:0"},
		{ID: "x", RaftAddr: "127.0.0.1:99999"},
		{ID: "x", RaftAddr: "127.0.0.1:http"},
		{ID: "x", RaftAddr: ":8300"},
		{ID: "x", RaftAddr: "0.0.0.0:8300"},
		{ID: "x", RaftAddr: "[::]:8300"},
		{ID: "x", RaftAddr: strings.Repeat("h", 300) + ":1"},
		{ID: "x", RaftAddr: free, HTTPAddr: "nonsense"},
		{ID: "x", RaftAddr: free, HTTPAddr: "ftp://127.0.0.1:1"},
		{ID: "x", RaftAddr: free, HTTPAddr: "http://"},
		{ID: "two words", RaftAddr: free},
		{ID: "line\nbreak", RaftAddr: free},
		{ID: "\xff\xfe", RaftAddr: free},
		{ID: strings.Repeat("i", 129), RaftAddr: free},
	} {
		err := join(req)
		if !errors.Is(err, cluster.ErrBadRequest) || errors.Is(err, cluster.ErrMemberConflict) {
			t.Errorf("join %+v: %v, want ErrBadRequest (not a conflict)", req, err)
		}
	}
	for _, req := range []cluster.JoinRequest{
		{ID: live.ID, RaftAddr: free},                          // a live member "moves"
		{ID: live.ID, RaftAddr: free, Fresh: true},             // ... claiming a wiped data dir
		{ID: "intruder", RaftAddr: live.RaftAddr},              // a live member's address
		{ID: "intruder", RaftAddr: live.RaftAddr, Fresh: true}, // ... from a fresh server
		{ID: "intruder", RaftAddr: leaderAddr},                 // the leader's address
		{ID: l.ID, RaftAddr: free},                             // the leader's ID
	} {
		err := join(req)
		if !errors.Is(err, cluster.ErrBadRequest) || !errors.Is(err, cluster.ErrMemberConflict) {
			t.Errorf("join %+v: %v, want ErrBadRequest and ErrMemberConflict", req, err)
		}
		t.Logf("join %+v refused: %v", req, err)
	}
	if got := config(); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatalf("refused joins changed the configuration:\n got %v\nwant %v", got, before)
	}
	// Idempotent: a member joining again as it is changes nothing.
	if err := join(cluster.JoinRequest{ID: live.ID, RaftAddr: live.RaftAddr, HTTPAddr: f.HTTPAddr}); err != nil {
		t.Fatalf("repeated join of %s: %v", live.ID, err)
	}
	if got := config(); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatalf("repeated join changed the configuration:\n got %v\nwant %v", got, before)
	}

	// A gone non-voter (nothing listens at its address) can move once the
	// leader sees it unreachable; it stays a non-voter.
	first, second := deadAddr(t), deadAddr(t)
	if err := join(cluster.JoinRequest{ID: "gone", RaftAddr: first}); err != nil {
		t.Fatalf("join gone: %v", err)
	}
	retryJoin := func(req cluster.JoinRequest) {
		t.Helper()
		err := testcluster.Poll(15*time.Second, func() error {
			err := join(req)
			if err != nil && !errors.Is(err, cluster.ErrMemberConflict) {
				t.Fatalf("join %+v: %v, want success or (until the member is seen dead) a conflict", req, err)
			}
			return err
		})
		if err != nil {
			t.Fatalf("join %+v: %v", req, err)
		}
	}
	retryJoin(cluster.JoinRequest{ID: "gone", RaftAddr: second})
	if s, ok := config()["gone"]; !ok || s.RaftAddr != second || s.Voter {
		t.Fatalf("after moving gone: %+v (present %v), want a non-voter at %s", s, ok, second)
	}
	// Another ID may take over the address of a gone server, which is removed.
	retryJoin(cluster.JoinRequest{ID: "successor", RaftAddr: second})
	got := config()
	if _, ok := got["gone"]; ok {
		t.Errorf("gone still in the configuration after successor took its address: %v", got)
	}
	if s := got["successor"]; s.RaftAddr != second || s.Voter {
		t.Errorf("successor: %+v, want a non-voter at %s", s, second)
	}
	if err := l.Node.Remove(ctxT(t, 10*time.Second), "successor", false); err != nil {
		t.Fatalf("remove successor: %v", err)
	}

	// A stopped voter can move, and stays a voter.
	c.StopNode(c.Index(f))
	moved := deadAddr(t)
	retryJoin(cluster.JoinRequest{ID: live.ID, RaftAddr: moved})
	if s := config()[live.ID]; s.RaftAddr != moved || !s.Voter {
		t.Fatalf("after moving stopped %s: %+v, want a voter at %s", live.ID, s, moved)
	}
}

package main

// End-to-end tests of failure detection and automatic recovery (issue 3),
// with real raftkv processes: a killed node is reported unhealthy within a
// second and healthy again after restart; a follower the leader compacted
// past catches up by snapshot; dead-node cleanup removes a node that is then
// re-added and promoted when it returns; a node removed while alive asks to
// be re-added by itself; a wiped node rejoins under its old ID without
// forming a second cluster; five nodes keep serving after losing two; the
// leader is killed repeatedly under write load without losing an
// acknowledged write; an idle cluster holds no elections.
//
// They reuse the process helpers of e2e_cluster_test.go and are skipped
// under -short. Every node gets --server-stabilization-time 1s so a
// (re)joining node is promoted within the test's budget.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/httpapi/wire"
)

// idleFor is how long TestRecoveryIdleNoElections leaves its cluster idle.
// The report wants ten minutes:
//
//	go test ./cmd/raftkv -run TestRecoveryIdleNoElections -timeout 15m -v -args -idle=10m
var idleFor = flag.Duration("idle", 20*time.Second, "how long TestRecoveryIdleNoElections keeps its cluster idle")

// Seed of the key samples; logged, and accepted back with -args -recovery.seed=N.
var recoverySeed = flag.Uint64("recovery.seed", 0, "seed for the recovery tests' key samples (0 = random)")

// startRecoveryCluster starts n nodes with fast promotion plus flags, or
// skips the test under -short.
func startRecoveryCluster(t *testing.T, n int, flags ...string) *e2eCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: starts raftkv processes; skipped with -short")
	}
	return startClusterWith(t, n, append([]string{"--server-stabilization-time", stabilization.String()}, flags...)...)
}

func testRand(t *testing.T) *rand.Rand {
	t.Helper()
	seed := *recoverySeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (rerun with -args -recovery.seed=%d)", seed, seed)
	return rand.New(rand.NewPCG(seed, seed))
}

func nodeStatus(n *e2eNode) (wire.NodeStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return n.client(time.Second).Status(ctx)
}

func nodeConfiguration(n *e2eNode) (wire.RaftConfiguration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return n.client(time.Second).Configuration(ctx)
}

// healthVia reads the autopilot health through via; ok is true for 200,
// false for 429.
func healthVia(via *e2eNode) (h wire.AutopilotHealth, ok bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return via.client(time.Second).Health(ctx)
}

func healthOf(h wire.AutopilotHealth, id string) (wire.AutopilotServer, bool) {
	for _, s := range h.Servers {
		if s.ID == id {
			return s, true
		}
	}
	return wire.AutopilotServer{}, false
}

// describeHealth is a one-line summary of a health view for messages.
func describeHealth(h wire.AutopilotHealth) string {
	var parts []string
	for _, s := range h.Servers {
		parts = append(parts, fmt.Sprintf("%s(healthy=%t voter=%t reachable=%t contact=%s lag=%d)",
			s.ID, s.Healthy, s.Voter, s.Reachable, s.LastContact, s.Lag))
	}
	return fmt.Sprintf("Healthy=%t FailureTolerance=%d Leader=%s [%s]", h.Healthy, h.FailureTolerance, h.Leader, strings.Join(parts, " "))
}

// checkAllHealthy reports nil when via answers 200 and lists exactly want,
// every one a healthy voter.
func checkAllHealthy(via *e2eNode, want []*e2eNode) error {
	h, ok, err := healthVia(via)
	if err != nil {
		return err
	}
	if !ok || !h.Healthy {
		return fmt.Errorf("via %s: 429: %s", via.id, describeHealth(h))
	}
	if len(h.Servers) != len(want) {
		return fmt.Errorf("via %s: %d servers, want %d: %s", via.id, len(h.Servers), len(want), describeHealth(h))
	}
	for _, n := range want {
		if s, found := healthOf(h, n.id); !found || !s.Healthy || !s.Voter {
			return fmt.Errorf("via %s: %s not a healthy voter: %s", via.id, n.id, describeHealth(h))
		}
	}
	return nil
}

// waitSameDigest waits until n's state machine digest equals the leader's
// (same applied index, same digest); writes must have stopped.
func waitSameDigest(t *testing.T, n, leader *e2eNode, timeout time.Duration) wire.Digest {
	t.Helper()
	var d wire.Digest
	waitFor(t, timeout, n.id+"'s digest to equal leader "+leader.id+"'s", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		want, err := leader.client(2 * time.Second).Digest(ctx)
		if err != nil {
			return err
		}
		got, err := n.client(2 * time.Second).Digest(ctx)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("%s %+v, leader %s %+v", n.id, got, leader.id, want)
		}
		d = got
		return nil
	})
	return d
}

// putUntil writes key=value through nodes, starting at nodes[first] and
// moving on after each failure, until a write succeeds or deadline passes.
// Safe to call from any goroutine.
func putUntil(nodes []*e2eNode, first int, key, value string, deadline time.Time) error {
	var lastErr error
	for i := first; time.Now().Before(deadline); i++ {
		n := nodes[i%len(nodes)]
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		ok, _, err := n.client(2*time.Second).Put(ctx, key, []byte(value), client.PutOptions{})
		cancel()
		if err == nil && ok {
			return nil
		}
		if err == nil {
			err = errors.New("put answered false")
		}
		lastErr = err
		time.Sleep(20 * time.Millisecond) // retry pacing, not a condition stand-in
	}
	return fmt.Errorf("put %s: %w", key, lastErr)
}

// putAll writes every key=value of kv through nodes with workers goroutines,
// each write retried until it succeeds; it fails t if any write has not
// succeeded within timeout.
func putAll(t *testing.T, nodes []*e2eNode, kv map[string]string, workers int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	work := make(chan [2]string)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for w := range workers {
		wg.Go(func() {
			for kvp := range work {
				if err := putUntil(nodes, w, kvp[0], kvp[1], deadline); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for k, v := range kv {
		work <- [2]string{k, v}
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("writing %d keys: %v", len(kv), firstErr)
	}
}

// numbered returns n keys prefix/00000.. with distinct values.
func numbered(prefix string, n int) map[string]string {
	kv := make(map[string]string, n)
	for i := range n {
		kv[fmt.Sprintf("%s/%05d", prefix, i)] = fmt.Sprintf("%s-value-%d", prefix, i)
	}
	return kv
}

// checkStale fails t unless every key of kv reads back with its value from
// n's local state machine (?stale) within timeout.
func checkStale(t *testing.T, n *e2eNode, kv map[string]string, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("%d keys readable on %s with ?stale", len(kv), n.id), func() error {
		for k, v := range kv {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			p, err := n.client(time.Second).Get(ctx, k, client.Stale)
			cancel()
			if err != nil {
				return fmt.Errorf("stale get %s on %s: %w", k, n.id, err)
			}
			if string(p.Value) != v {
				return fmt.Errorf("stale get %s on %s: got %q, want %q", k, n.id, p.Value, v)
			}
		}
		return nil
	})
}

// sample returns up to n entries of kv chosen with r.
func sample(r *rand.Rand, kv map[string]string, n int) map[string]string {
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	r.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	out := map[string]string{}
	for _, k := range keys[:min(n, len(keys))] {
		out[k] = kv[k]
	}
	return out
}

// sendSignal delivers sig to n's process without waiting for it to exit
// (for SIGSTOP and SIGCONT; kill and stop wait).
func (n *e2eNode) sendSignal(sig syscall.Signal) error {
	n.mu.Lock()
	cmd := n.cmd
	n.mu.Unlock()
	if cmd == nil {
		return fmt.Errorf("%s was never started", n.id)
	}
	return cmd.Process.Signal(sig)
}

// stabilization is the --server-stabilization-time every recovery test uses.
const stabilization = time.Second

// termWatch polls every running node's term in the background and keeps
// when the highest term seen last changed: a new leader's autopilot ignores
// the stabilization time until it has run that long (raft-autopilot's
// State.ServerStabilizationTime), so a promotion soon after an election
// proves nothing about stabilization.
type termWatch struct {
	mu      sync.Mutex
	term    uint64
	changes []time.Time // the watch's start, then when the highest term seen rose
	stop    func()
}

func watchTerms(t *testing.T, c *e2eCluster) *termWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	// The leader may have been elected just before the watch starts: count
	// the start as a change, which can only make a tenure look shorter.
	tw := &termWatch{changes: []time.Time{time.Now()}}
	var wg sync.WaitGroup
	wg.Go(func() { // stopped by tw.stop
		for ctx.Err() == nil {
			for _, n := range c.nodes {
				if !n.running() {
					continue
				}
				if st, err := nodeStatus(n); err == nil {
					tw.mu.Lock()
					if st.Term > tw.term {
						if tw.term != 0 { // not the first sample
							tw.changes = append(tw.changes, time.Now())
						}
						tw.term = st.Term
					}
					tw.mu.Unlock()
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(25 * time.Millisecond): // sampling period
			}
		}
	})
	tw.stop = sync.OnceFunc(func() { cancel(); wg.Wait() })
	t.Cleanup(tw.stop)
	return tw
}

// lastChangeBefore is when the highest term last rose before at, or when
// the watch started.
func (tw *termWatch) lastChangeBefore(at time.Time) time.Time {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	var last time.Time
	for _, c := range tw.changes {
		if c.Before(at) {
			last = c
		}
	}
	return last
}

// elections is how many times the highest term rose while watched.
func (tw *termWatch) elections() int {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	return len(tw.changes) - 1
}

// watchPromotion polls the configuration through vias (the first that
// answers) until f is a voter in it. It returns when, measured from t0, f
// was first seen as a non-voter and when as a voter. It fails t unless f was
// a non-voter first, and, when the leader that promoted it had led for
// longer than the stabilization time stab (per tw), unless f stayed a
// non-voter for stab (less a polling allowance). With replacing, f's old
// entry is still a voter at t0 and is to be replaced: only a voter seen
// after the non-voter counts. stab 0 checks no duration.
func watchPromotion(t *testing.T, tw *termWatch, vias []*e2eNode, f *e2eNode, t0 time.Time, timeout, stab time.Duration, replacing bool) (nonVoterAt, voterAt time.Duration) {
	t.Helper()
	what := f.id + " in the configuration as a voter"
	if replacing {
		what = f.id + "'s old voter entry replaced by a non-voter that is then promoted"
	}
	waitFor(t, timeout, what, func() error {
		var rc wire.RaftConfiguration
		var err error
		for _, via := range vias {
			if rc, err = nodeConfiguration(via); err == nil {
				break
			}
		}
		if err != nil {
			return err
		}
		for _, s := range rc.Servers {
			if s.ID != f.id {
				continue
			}
			if !s.Voter {
				if nonVoterAt == 0 {
					nonVoterAt = time.Since(t0)
				}
				return fmt.Errorf("%s is a non-voter", f.id)
			}
			if replacing && nonVoterAt == 0 {
				return fmt.Errorf("%s is still (or already again) a voter; not yet seen as a non-voter", f.id)
			}
			voterAt = time.Since(t0)
			return nil
		}
		return fmt.Errorf("%s not in the configuration: %+v", f.id, rc.Servers)
	})
	if nonVoterAt == 0 {
		t.Errorf("%s became a voter without being seen as a non-voter first (voter after %s)", f.id, ms(voterAt))
		return nonVoterAt, voterAt
	}
	if stab == 0 {
		return nonVoterAt, voterAt
	}
	promotedAt := t0.Add(voterAt)
	if tenure := promotedAt.Sub(tw.lastChangeBefore(promotedAt)); tenure < stab+200*time.Millisecond {
		t.Logf("note: a leader was elected %s before %s's promotion; its autopilot ignores the stabilization time %s for that long, so the stabilization time is not checked",
			ms(tenure), f.id, stab)
		return nonVoterAt, voterAt
	}
	if voterAt-nonVoterAt < stab-100*time.Millisecond {
		t.Errorf("%s promoted %s after it was first seen as a non-voter, want at least the stabilization time %s", f.id, ms(voterAt-nonVoterAt), stab)
	}
	return nonVoterAt, voterAt
}

func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }

// TestRecoveryHealthDetection: a follower killed with SIGKILL is reported
// unhealthy (429) within a second through the leader and through the other
// follower, and healthy again (200) after a plain restart.
func TestRecoveryHealthDetection(t *testing.T) {
	c := startRecoveryCluster(t, 3)
	leader := c.leader(t, c.nodes, 5*time.Second)
	f, other := c.others(leader)[0], c.others(leader)[1]
	waitFor(t, 10*time.Second, "a healthy cluster", func() error { return checkAllHealthy(leader, c.nodes) })

	t0 := time.Now()
	f.kill(t)
	detected := map[string]time.Duration{}
	var last wire.AutopilotHealth
	waitFor(t, 5*time.Second, f.id+" reported unhealthy (429) through "+leader.id+" and "+other.id, func() error {
		for _, via := range []*e2eNode{leader, other} {
			if _, done := detected[via.id]; done {
				continue
			}
			h, ok, err := healthVia(via)
			if err != nil {
				return fmt.Errorf("via %s: %w", via.id, err)
			}
			s, found := healthOf(h, f.id)
			if !found {
				return fmt.Errorf("via %s: %s missing: %s", via.id, f.id, describeHealth(h))
			}
			if ok || h.Healthy || s.Healthy {
				return fmt.Errorf("via %s: status ok=%t: %s", via.id, ok, describeHealth(h))
			}
			detected[via.id] = time.Since(t0)
			last = h
		}
		return nil
	})
	t.Logf("kill -9 of %s -> reported unhealthy with 429: through leader %s after %s, through follower %s after %s",
		f.id, leader.id, ms(detected[leader.id]), other.id, ms(detected[other.id]))
	t.Logf("health after the kill: %s", describeHealth(last))
	for via, d := range detected {
		if d >= time.Second {
			t.Errorf("through %s: unhealthy reported %s after the kill, want under 1s", via, ms(d))
		}
	}
	if last.FailureTolerance != 0 {
		t.Errorf("FailureTolerance %d with one of three voters down, want 0", last.FailureTolerance)
	}
	if s, _ := healthOf(last, f.id); s.Reachable {
		t.Errorf("%s reported Reachable after kill -9", f.id)
	}
	if res := runCLI(t, "--http-addr", other.httpAddr, "cluster", "health"); res.code != 1 {
		t.Errorf("raftkv cluster health with %s down: exit %d, want 1", f.id, res.code)
	}

	t1 := time.Now()
	c.restart(t, f)
	waitFor(t, 20*time.Second, "every server healthy (200) again through "+leader.id+" and "+other.id, func() error {
		for _, via := range []*e2eNode{leader, other} {
			if err := checkAllHealthy(via, c.nodes); err != nil {
				return err
			}
		}
		return nil
	})
	t.Logf("restart of %s -> cluster healthy (200) again after %s, no operator action", f.id, ms(time.Since(t1)))
	if res := runCLI(t, "--http-addr", f.httpAddr, "cluster", "health"); res.code != 0 {
		t.Errorf("raftkv cluster health after recovery: exit %d, want 0", res.code)
	}
}

// TestRecoverySnapshotCatchUp: a follower misses 5,000 writes while the
// leader snapshots and compacts its log past it; restarted, it installs the
// leader's snapshot and ends with the leader's exact state.
func TestRecoverySnapshotCatchUp(t *testing.T) {
	c := startRecoveryCluster(t, 3, "--snapshot-threshold", "500", "--snapshot-interval", "200ms", "--trailing-logs", "100")
	r := testRand(t)
	leader := c.leader(t, c.nodes, 5*time.Second)
	f := c.others(leader)[0]
	// f must have no snapshot of its own, so any restore after its restart is
	// an install of the leader's snapshot.
	if st, err := nodeStatus(f); err != nil {
		t.Fatal(err)
	} else if st.SnapshotsTaken != 0 || st.Restores != 0 {
		t.Fatalf("%s before the kill: SnapshotsTaken %d Restores %d, want 0 0", f.id, st.SnapshotsTaken, st.Restores)
	}
	f.kill(t)

	const writes = 5000
	kv := numbered("snap", writes)
	t0 := time.Now()
	putAll(t, c.others(f), kv, 16, 60*time.Second)
	t.Logf("%d writes through %v in %s while %s was down", writes, []string{c.others(f)[0].id, c.others(f)[1].id}, ms(time.Since(t0)), f.id)
	var lst wire.NodeStatus
	waitFor(t, 10*time.Second, "the leader to take a snapshot", func() error {
		st, err := nodeStatus(leader)
		if err != nil {
			return err
		}
		lst = st
		if st.SnapshotsTaken == 0 {
			return fmt.Errorf("%s SnapshotsTaken 0 at applied index %d", leader.id, st.AppliedIndex)
		}
		return nil
	})
	t.Logf("leader %s: SnapshotsTaken %d, applied index %d", leader.id, lst.SnapshotsTaken, lst.AppliedIndex)

	t1 := time.Now()
	c.restart(t, f)
	d := waitSameDigest(t, f, leader, 30*time.Second)
	caughtUp := time.Since(t1)
	st, err := nodeStatus(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s restarted -> same digest as the leader (applied index %d, %d keys) after %s; Restores %d",
		f.id, d.AppliedIndex, d.Keys, ms(caughtUp), st.Restores)
	if st.Restores == 0 {
		t.Errorf("%s caught up without installing a snapshot (Restores 0), want the leader's snapshot installed", f.id)
	}
	checkStale(t, f, sample(r, kv, 200), 5*time.Second)
}

// TestRecoveryDeadNodeCleanupAndReadd: with --dead-node-timeout, a killed
// follower is removed from the configuration; restarted with its data dir it
// is re-added as a non-voter, promoted, and has every write it missed.
func TestRecoveryDeadNodeCleanupAndReadd(t *testing.T) {
	c := startRecoveryCluster(t, 3, "--dead-node-timeout", "2s")
	tw := watchTerms(t, c)
	defer func() { t.Logf("elections seen during the test: %d", tw.elections()) }()
	leader := c.leader(t, c.nodes, 5*time.Second)
	f := c.others(leader)[0]
	rest := c.others(f)
	waitFor(t, 10*time.Second, "a healthy cluster", func() error { return checkAllHealthy(leader, c.nodes) })

	t0 := time.Now()
	f.kill(t)
	waitFor(t, 20*time.Second, "dead-node cleanup to remove "+f.id, func() error {
		rc, err := nodeConfiguration(leader)
		if err != nil {
			return err
		}
		for _, s := range rc.Servers {
			if s.ID == f.id {
				return fmt.Errorf("%s still in the configuration: %+v", f.id, rc.Servers)
			}
		}
		if len(rc.Servers) != 2 {
			return fmt.Errorf("%d servers, want 2: %+v", len(rc.Servers), rc.Servers)
		}
		return nil
	})
	t.Logf("kill -9 of %s -> removed by dead-node cleanup after %s (timeout 2s)", f.id, ms(time.Since(t0)))
	c.waitVoters(t, rest, 5*time.Second)

	kv := numbered("gone", 200)
	putAll(t, rest, kv, 8, 20*time.Second)

	t1 := time.Now()
	c.restart(t, f)
	readded, promoted := watchPromotion(t, tw, rest, f, t1, 30*time.Second, stabilization, false)
	c.waitVoters(t, c.nodes, 10*time.Second)
	t.Logf("restart of %s -> re-added as non-voter after %s, promoted to voter after %s", f.id, ms(readded), ms(promoted))
	checkStale(t, f, kv, 10*time.Second)
}

// TestRecoveryRemovedWhileAliveRejoinsByItself: a follower removed from the
// configuration while frozen (SIGSTOP) notices, once thawed, that it is no
// longer a member and asks to be re-added, with no operator action.
func TestRecoveryRemovedWhileAliveRejoinsByItself(t *testing.T) {
	c := startRecoveryCluster(t, 3, "--rejoin-after", "1s")
	tw := watchTerms(t, c)
	defer func() { t.Logf("elections seen during the test: %d", tw.elections()) }()
	leader := c.leader(t, c.nodes, 5*time.Second)
	f := c.others(leader)[0]
	rest := c.others(f)

	if err := f.sendSignal(syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP %s: %v", f.id, err)
	}
	t.Cleanup(func() { f.sendSignal(syscall.SIGCONT) }) // so the cluster's cleanup can stop it
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := leader.client(10*time.Second).Remove(ctx, f.id); err != nil {
		t.Fatalf("DELETE /v1/operator/raft/peer?id=%s through leader %s: %v", f.id, leader.id, err)
	}
	c.waitVoters(t, rest, 10*time.Second)
	kv := numbered("removed", 50)
	putAll(t, rest, kv, 4, 10*time.Second)

	t0 := time.Now()
	if err := f.sendSignal(syscall.SIGCONT); err != nil {
		t.Fatalf("SIGCONT %s: %v", f.id, err)
	}
	readded, promoted := watchPromotion(t, tw, rest, f, t0, 20*time.Second, stabilization, false)
	c.waitVoters(t, c.nodes, 10*time.Second)
	t.Logf("%s removed while frozen -> thawed -> re-added as a non-voter after %s, a voter after %s, no operator action", f.id, ms(readded), ms(promoted))

	put(t, leader, "removed/fresh", "after-rejoin", 5*time.Second)
	kv["removed/fresh"] = "after-rejoin"
	checkStale(t, f, kv, 10*time.Second)
}

// TestRecoveryWipedNodeRejoinsUnderOldID: a follower whose data dir is wiped
// rejoins under its old ID: its old entry is replaced (exactly three servers,
// no duplicate ID or address), it is promoted, it has all the data, and it
// never leads a cluster of its own.
func TestRecoveryWipedNodeRejoinsUnderOldID(t *testing.T) {
	wipedRejoin(t, 0)
}

// TestRecoveryStablePromotionAfterWipe is the wiped-node rejoin with a 3s
// stabilization time under a leader that has led for longer: the re-added
// non-voter must stay one for 3s after it turns healthy. (raft-autopilot
// v0.3.0 alone promotes at once; cluster/health.go corrects StableSince.)
func TestRecoveryStablePromotionAfterWipe(t *testing.T) {
	wipedRejoin(t, 3*time.Second)
}

// wipedRejoin kills a follower, wipes its data dir and restarts it under
// its old ID. With stab > 0 every node runs with that stabilization time,
// the restart waits for a leader that has led for longer, and the promotion
// must wait for it.
func wipedRejoin(t *testing.T, stab time.Duration) {
	var flags []string
	if stab > 0 {
		flags = []string{"--server-stabilization-time", stab.String()}
	}
	c := startRecoveryCluster(t, 3, flags...)
	tw := watchTerms(t, c)
	defer func() { t.Logf("elections seen during the test: %d", tw.elections()) }()
	leader := c.leader(t, c.nodes, 5*time.Second)
	f := c.others(leader)[0]
	rest := c.others(f)
	putAll(t, c.nodes, numbered("before", 100), 8, 20*time.Second)

	// Sample f's own view all along: it must never lead alone.
	var (
		sampleMu   sync.Mutex
		samples    int
		states     = map[string]int{}
		violations []string
	)
	sampleCtx, stopSampling := context.WithCancel(context.Background())
	var sampler sync.WaitGroup
	sampler.Go(func() { // stopped by stopSampling
		for sampleCtx.Err() == nil {
			if st, err := nodeStatus(f); err == nil {
				var v string
				if st.State == "Leader" {
					rc, err := nodeConfiguration(f)
					if err != nil || len(rc.Servers) <= 1 {
						v = fmt.Sprintf("%s: %s leads term %d with configuration %+v (err %v)", time.Now().Format(time.RFC3339Nano), f.id, st.Term, rc.Servers, err)
					}
				}
				sampleMu.Lock()
				samples++
				states[st.State]++
				if v != "" {
					violations = append(violations, v)
				}
				sampleMu.Unlock()
			}
			select {
			case <-sampleCtx.Done():
			case <-time.After(10 * time.Millisecond): // sampling period
			}
		}
	})
	defer func() { stopSampling(); sampler.Wait() }()

	f.kill(t)
	putAll(t, rest, numbered("wiped", 100), 8, 20*time.Second)
	if err := os.RemoveAll(f.dataDir); err != nil {
		t.Fatalf("wipe %s: %v", f.dataDir, err)
	}
	if stab > 0 {
		// Let the leader's autopilot run past the stabilization time, so the
		// promotion below must honour it.
		waitFor(t, 30*time.Second, fmt.Sprintf("a leader in office for %s", stab), func() error {
			if d := time.Since(tw.lastChangeBefore(time.Now())); d < stab+200*time.Millisecond {
				return fmt.Errorf("last election (or watch start) %s ago", ms(d))
			}
			return nil
		})
	}
	t0 := time.Now()
	c.restart(t, f)
	readded, promoted := watchPromotion(t, tw, rest, f, t0, 30*time.Second, stab, true)
	c.waitVoters(t, c.nodes, 10*time.Second)
	t.Logf("wiped %s restarted under its old ID -> a non-voter after %s, a voter again after %s", f.id, ms(readded), ms(promoted))

	for _, n := range c.nodes {
		rc, err := nodeConfiguration(n)
		if err != nil {
			t.Fatal(err)
		}
		ids, addrs := map[string]bool{}, map[string]bool{}
		for _, s := range rc.Servers {
			if ids[s.ID] || addrs[s.Address] {
				t.Errorf("via %s: duplicate ID or address %s %s: %+v", n.id, s.ID, s.Address, rc.Servers)
			}
			ids[s.ID], addrs[s.Address] = true, true
			if s.ID == f.id && s.Address != f.raftAddr {
				t.Errorf("via %s: %s at %s, want %s", n.id, s.ID, s.Address, f.raftAddr)
			}
		}
		if len(rc.Servers) != 3 {
			t.Errorf("via %s: %d servers, want 3: %+v", n.id, len(rc.Servers), rc.Servers)
		}
	}
	newLeader := c.leader(t, c.nodes, 5*time.Second) // every node agrees on one leader
	d := waitSameDigest(t, f, newLeader, 20*time.Second)
	t.Logf("%s has the leader's state: applied index %d, %d keys; leader %s, agreed by every node", f.id, d.AppliedIndex, d.Keys, newLeader.id)

	stopSampling()
	sampler.Wait()
	sampleMu.Lock()
	defer sampleMu.Unlock()
	t.Logf("%d samples of %s's status; states seen %v", samples, f.id, states)
	for _, v := range violations {
		t.Errorf("second cluster: %s", v)
	}
}

// TestRecoveryFiveNodesLoseTwo: five voters lose two followers to SIGKILL;
// writes go on through the survivors, health shows failure tolerance 0 and
// the two unhealthy; restarted, all five are healthy voters again.
func TestRecoveryFiveNodesLoseTwo(t *testing.T) {
	c := startRecoveryCluster(t, 5)
	leader := c.leader(t, c.nodes, 5*time.Second)
	waitFor(t, 15*time.Second, "a healthy cluster of five", func() error { return checkAllHealthy(leader, c.nodes) })
	down := c.others(leader)[:2]
	var survivors []*e2eNode
	for _, n := range c.nodes {
		if !slices.Contains(down, n) {
			survivors = append(survivors, n)
		}
	}

	t0 := time.Now()
	for _, n := range down {
		n.kill(t)
	}
	w := startWriter(t, "five", survivors)
	waitFor(t, 10*time.Second, "writes through the three survivors", func() error {
		if n := w.successesAfter(t0); n < 50 {
			return fmt.Errorf("%d writes acknowledged since the kills", n)
		}
		return nil
	})
	var h wire.AutopilotHealth
	waitFor(t, 5*time.Second, "health to show failure tolerance 0 and the two down", func() error {
		var ok bool
		var err error
		h, ok, err = healthVia(survivors[1])
		if err != nil {
			return err
		}
		if ok || h.Healthy || h.FailureTolerance != 0 {
			return fmt.Errorf("ok=%t: %s", ok, describeHealth(h))
		}
		for _, n := range c.nodes {
			s, found := healthOf(h, n.id)
			if want := !slices.Contains(down, n); !found || s.Healthy != want {
				return fmt.Errorf("%s healthy=%t (listed %t), want %t: %s", n.id, s.Healthy, found, want, describeHealth(h))
			}
		}
		return nil
	})
	t.Logf("with %s and %s down: %s", down[0].id, down[1].id, describeHealth(h))

	t1 := time.Now()
	for _, n := range down {
		c.restart(t, n)
	}
	waitFor(t, 30*time.Second, "five healthy voters again", func() error { return checkAllHealthy(survivors[0], c.nodes) })
	c.waitVoters(t, c.nodes, 10*time.Second)
	t.Logf("restart of %s and %s -> five healthy voters after %s", down[0].id, down[1].id, ms(time.Since(t1)))
	w.stop()
	checkAcked(t, w, c.leader(t, c.nodes, 5*time.Second))
}

// loadHistory records every write of overwriting clients: per key the last
// acknowledged value, plus the values whose outcome is unknown (they may
// take effect, even after a later acknowledged write) or failed (they must
// not), and the start and end of every acknowledged write.
type loadHistory struct {
	mu        sync.Mutex
	acks      [][2]time.Time // start, end
	lastAcked map[string]string
	unknown   map[string]map[string]bool
	failed    map[string]map[string]bool
	kinds     map[string]int
}

func newLoadHistory() *loadHistory {
	return &loadHistory{lastAcked: map[string]string{}, unknown: map[string]map[string]bool{},
		failed: map[string]map[string]bool{}, kinds: map[string]int{}}
}

func (h *loadHistory) record(key, val string, start, end time.Time, ok bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	add := func(m map[string]map[string]bool) {
		if m[key] == nil {
			m[key] = map[string]bool{}
		}
		m[key][val] = true
	}
	var ce *client.Error
	switch {
	case err == nil && ok:
		h.lastAcked[key] = val
		h.acks = append(h.acks, [2]time.Time{start, end})
		h.kinds["acknowledged"]++
	case err == nil:
		add(h.unknown)
		h.kinds["answered false"]++
	case errors.As(err, &ce) && ce.Outcome == wire.OutcomeFailed:
		add(h.failed)
		h.kinds[fmt.Sprintf("HTTP %d failed", ce.Status)]++
	case errors.As(err, &ce):
		add(h.unknown)
		h.kinds[fmt.Sprintf("HTTP %d %s", ce.Status, ce.Outcome)]++
	case errors.Is(err, syscall.ECONNREFUSED):
		add(h.failed)
		h.kinds["connection refused"]++
	default:
		add(h.unknown)
		h.kinds["transport error or timeout"]++
	}
}

// window returns the end of the last acknowledged write that ended by t0 and
// the end of the first acknowledged write that started after t0 (so an
// acknowledgement in flight at t0 does not count as recovery).
func (h *loadHistory) window(t0 time.Time) (lastBefore, firstAfter time.Time, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, a := range h.acks {
		if !a[1].After(t0) && a[1].After(lastBefore) {
			lastBefore = a[1]
		}
		if a[0].After(t0) && (firstAfter.IsZero() || a[1].Before(firstAfter)) {
			firstAfter = a[1]
		}
	}
	return lastBefore, firstAfter, !lastBefore.IsZero() && !firstAfter.IsZero()
}

// runLoad starts perNode overwriting clients per node; each owns keys
// load/<client>/<00..keys-1> and writes unique values in turn. It returns a
// function that stops the clients and waits for them.
func runLoad(h *loadHistory, nodes []*e2eNode, perNode, keys int) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i, n := range nodes {
		for j := range perNode {
			id := i*perNode + j
			wg.Go(func() { // stopped by stop
				cl := n.client(time.Second)
				for seq := 0; ctx.Err() == nil; seq++ {
					key, val := fmt.Sprintf("load/%d/%02d", id, seq%keys), fmt.Sprintf("%d.%d", id, seq)
					rctx, rcancel := context.WithTimeout(ctx, time.Second)
					start := time.Now()
					ok, _, err := cl.Put(rctx, key, []byte(val), client.PutOptions{})
					h.record(key, val, start, time.Now(), ok, err)
					rcancel()
					if err != nil {
						select { // back off so a dead node does not spin a core
						case <-ctx.Done():
						case <-time.After(10 * time.Millisecond):
						}
					}
				}
			})
		}
	}
	var once sync.Once
	return func() { once.Do(func() { cancel(); wg.Wait() }) }
}

// verify fails t unless a linearizable listing through via shows, for every
// key with an acknowledged write, its last acknowledged value, or the value
// of a write whose outcome was unknown; never a write that failed.
func (h *loadHistory) verify(t *testing.T, via *e2eNode) {
	t.Helper()
	var pairs []wire.KVPair
	waitFor(t, 10*time.Second, "a linearizable listing of load/", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		pairs, err = via.client(5*time.Second).List(ctx, "load/", client.Default)
		return err
	})
	got := map[string]string{}
	for _, p := range pairs {
		got[p.Key] = string(p.Value)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	lost, fromUnknown := 0, 0
	for k, want := range h.lastAcked {
		v, present := got[k]
		switch {
		case present && v == want:
		case present && h.unknown[k][v]:
			fromUnknown++
		case present && h.failed[k][v]:
			lost++
			t.Errorf("%s = %q: a write reported failed (certainly not done) took effect; last acknowledged %q", k, v, want)
		default:
			lost++
			if lost <= 10 {
				t.Errorf("%s: got %q (present %t), want the last acknowledged value %q", k, v, present, want)
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d keys lost their last acknowledged write", lost, len(h.lastAcked))
	}
	t.Logf("%d writes acknowledged over %d keys, all present: %d hold their last acknowledged value, %d a later write whose outcome was unknown; outcomes %v",
		len(h.acks), len(h.lastAcked), len(h.lastAcked)-fromUnknown-lost, fromUnknown, h.kinds)
}

// TestRecoveryLeaderKillsUnderLoad kills the leader with SIGKILL 20 times
// under write load through every node, restarting it each time, measures
// each unavailability window and the time to a new leader, and checks that
// no acknowledged write was lost.
func TestRecoveryLeaderKillsUnderLoad(t *testing.T) {
	const (
		kills     = 20
		minKills  = 10
		budget    = 90 * time.Second // past it, stop after minKills
		perNode   = 2
		keysPerCl = 20
	)
	c := startRecoveryCluster(t, 3)
	h := newLoadHistory()
	stopLoad := runLoad(h, c.nodes, perNode, keysPerCl)
	t.Cleanup(stopLoad)

	var windows, elections []time.Duration
	begin := time.Now()
	for try := 0; len(windows) < kills; try++ {
		if try >= 2*kills {
			t.Fatalf("only %d of %d kills after %d tries: leadership kept moving before the kill", len(windows), kills, try)
		}
		if len(windows) >= minKills && time.Since(begin) > budget {
			t.Logf("stopping after %d kills: %d kills would take longer than %s", len(windows), kills, budget)
			break
		}
		// Every node must be a caught-up voter before the next kill, or the
		// kill would take the cluster below quorum.
		c.waitVoters(t, c.nodes, 15*time.Second)
		leader := c.leader(t, c.nodes, 10*time.Second)
		for _, n := range c.others(leader) {
			waitCaughtUp(t, n, leader, 15*time.Second)
		}
		ready := time.Now()
		// Only a write acknowledged after ready counts: on the first round
		// the load may not have had any acknowledged before it, and window's
		// ok (which also wants one before) would then never turn true.
		waitFor(t, 15*time.Second, "writes flowing before the kill", func() error {
			if _, first, _ := h.window(ready); first.IsZero() {
				return errors.New("no write acknowledged yet")
			}
			return nil
		})
		st, err := nodeStatus(leader)
		if err != nil || st.State != "Leader" {
			continue // leadership moved meanwhile: kill only a node that leads now
		}
		survivors := c.others(leader)

		tKill := time.Now()
		leader.kill(t)
		var newLeader *e2eNode
		waitFor(t, 10*time.Second, "a new leader among the survivors", func() error {
			for _, n := range survivors {
				s, err := nodeStatus(n)
				if err == nil && s.State == "Leader" && s.Term > st.Term {
					newLeader = n
					return nil
				}
			}
			return errors.New("no survivor leads a newer term")
		})
		election := time.Since(tKill)
		var lastBefore, firstAfter time.Time
		waitFor(t, 10*time.Second, "a write acknowledged after the kill", func() error {
			var ok bool
			lastBefore, firstAfter, ok = h.window(tKill)
			if !ok {
				return errors.New("none yet")
			}
			return nil
		})
		window := firstAfter.Sub(lastBefore)
		windows, elections = append(windows, window), append(elections, election)
		t.Logf("kill %2d: leader %s (term %d) -> %s leads after %s; writes unavailable %s (last ack %s before the kill, first %s after)",
			len(windows), leader.id, st.Term, newLeader.id, ms(election), ms(window), ms(tKill.Sub(lastBefore)), ms(firstAfter.Sub(tKill)))
		c.restart(t, leader)
	}
	c.waitVoters(t, c.nodes, 15*time.Second)
	stopLoad()
	t.Logf("%d kills in %s", len(windows), ms(time.Since(begin)))

	med, worst := medianMax(windows)
	emed, eworst := medianMax(elections)
	t.Logf("unavailability over %d leader kills: median %s, worst %s; time to new leader: median %s, worst %s",
		len(windows), ms(med), ms(worst), ms(emed), ms(eworst))
	if worst >= 2*time.Second {
		t.Errorf("worst unavailability %s, want under 2s", ms(worst))
	}
	if med >= time.Second {
		t.Errorf("median unavailability %s, want under 1s", ms(med))
	}
	h.verify(t, c.leader(t, c.nodes, 10*time.Second))
}

func medianMax(ds []time.Duration) (median, worst time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return (s[(len(s)-1)/2] + s[len(s)/2]) / 2, s[len(s)-1]
}

// TestRecoveryIdleNoElections leaves a healthy cluster idle for -idle (20s
// by default) and fails if any node's term moves: an idle cluster holds no
// elections.
func TestRecoveryIdleNoElections(t *testing.T) {
	c := startRecoveryCluster(t, 3)
	leader := c.leader(t, c.nodes, 5*time.Second)
	waitFor(t, 10*time.Second, "a healthy cluster", func() error { return checkAllHealthy(leader, c.nodes) })
	start := map[string]wire.NodeStatus{}
	for _, n := range c.nodes {
		st, err := nodeStatus(n)
		if err != nil {
			t.Fatal(err)
		}
		start[n.id] = st
	}
	t.Logf("idle for %s; leader %s, term %d", *idleFor, leader.id, start[leader.id].Term)

	t0 := time.Now()
	last := map[string]wire.NodeStatus{}
	for k, v := range start {
		last[k] = v
	}
	tick := time.NewTicker(time.Second) // observation period; the idle time is what is under test
	defer tick.Stop()
	for time.Since(t0) < *idleFor {
		<-tick.C
		for _, n := range c.nodes {
			st, err := nodeStatus(n)
			if err != nil {
				t.Errorf("after %s: status of %s: %v", ms(time.Since(t0)), n.id, err)
				continue
			}
			if prev := last[n.id]; st.Term != prev.Term || st.LeaderID != prev.LeaderID || st.State != prev.State {
				t.Errorf("after %s idle: %s term %d -> %d, state %s -> %s, leader %q -> %q",
					ms(time.Since(t0)), n.id, prev.Term, st.Term, prev.State, st.State, prev.LeaderID, st.LeaderID)
			}
			last[n.id] = st
		}
	}
	elections := uint64(0)
	for _, n := range c.nodes {
		elections = max(elections, last[n.id].Term-start[n.id].Term)
	}
	t.Logf("%s idle: %d elections (term %d -> %d on the leader; its last index %d -> %d)", ms(time.Since(t0)), elections,
		start[leader.id].Term, last[leader.id].Term, start[leader.id].LastIndex, last[leader.id].LastIndex)
}

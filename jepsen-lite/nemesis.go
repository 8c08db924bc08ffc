package jepsenlite

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Fault classes the nemesis knows.
const (
	FaultKill       = "kill"       // kill -9 one node (the leader half the time), restart it
	FaultKillAll    = "kill-all"   // kill -9 every node, restart them all
	FaultPause      = "pause"      // SIGSTOP one node longer than the election timeout, SIGCONT
	FaultPartition  = "partition"  // isolate the leader, random halves; for 5 nodes also ring and bridge
	FaultMembership = "membership" // leave + rejoin, or remove + wipe + re-add
	FaultLoss       = "loss"       // drop 20-40% of node-to-node packets at random
)

// PartitionShapes lists the partition shapes; ring and bridge need 5 nodes.
var PartitionShapes = []string{"isolate-leader", "halves", "ring", "bridge"}

// AllFaults lists every class, in the order the CLI documents them.
var AllFaults = []string{FaultKill, FaultKillAll, FaultPause, FaultPartition, FaultMembership, FaultLoss}

// NemesisConfig tunes the fault schedule.
type NemesisConfig struct {
	Faults []string
	// FaultMin/FaultMax bound how long a fault stays on; Heal is the quiet
	// window between faults.
	FaultMin, FaultMax, Heal time.Duration
	// Combine injects up to two classes at once (soaks); otherwise one at a time.
	Combine bool
	// Partitions restricts the partition shapes (isolate-leader, halves,
	// ring, bridge); empty means every shape that fits the cluster size.
	Partitions []string
}

// NetFaults is what the nemesis needs of the network: real partitions
// (Network: namespaces and iptables) or the portable ones (ProxyNet).
type NetFaults interface {
	// Partition cuts node i from every node in grudge[i] (symmetric) and
	// heals every other link.
	Partition(ctx context.Context, grudge map[int][]int) error
	// Lossy drops node-to-node packets with probability p.
	Lossy(ctx context.Context, p float64) error
	// Heal removes every network fault.
	Heal(ctx context.Context) error
}

// Nemesis injects faults on a seeded schedule and records them.
type Nemesis struct {
	cfg     NemesisConfig
	cluster *Cluster
	net     NetFaults // nil: partitions are skipped
	hist    *History
	rng     *rand.Rand
	log     *slog.Logger
	// Count counts injected faults per class.
	Count map[string]int
}

// NewNemesis returns a nemesis over cluster; net may be nil (an untyped nil:
// partition and loss faults are then skipped).
func NewNemesis(cfg NemesisConfig, c *Cluster, net NetFaults, h *History, seed uint64, log *slog.Logger) *Nemesis {
	return &Nemesis{cfg: cfg, cluster: c, net: net, hist: h, rng: rand.New(rand.NewPCG(seed, 0x6e656d)), log: log, Count: map[string]int{}}
}

// healFunc undoes one fault.
type healFunc func(ctx context.Context) error

// Run injects faults until ctx ends, then heals everything. Errors injecting
// one fault are recorded and skipped; only a failure to heal is returned.
func (nm *Nemesis) Run(ctx context.Context) error {
	if len(nm.cfg.Faults) == 0 {
		<-ctx.Done()
		return nil
	}
	for sleepCtx(ctx, nm.cfg.Heal) {
		classes := []string{nm.cfg.Faults[nm.rng.IntN(len(nm.cfg.Faults))]}
		if nm.cfg.Combine && len(nm.cfg.Faults) > 1 && nm.rng.IntN(2) == 0 {
			other := nm.cfg.Faults[nm.rng.IntN(len(nm.cfg.Faults))]
			if other != classes[0] {
				classes = append(classes, other)
				// Membership changes need a leader: make them before the
				// other fault can take it away.
				if other == FaultMembership {
					classes[0], classes[1] = classes[1], classes[0]
				}
			}
		}
		var heals []healFunc
		var names []string
		for _, cl := range classes {
			name, targets, heal, err := nm.inject(ctx, cl)
			if err != nil {
				nm.hist.AddNemesis(NemesisEvent{Phase: "skip", Fault: cl, Detail: err.Error()})
				nm.log.Warn("fault not injected", "fault", cl, "err", err)
				continue
			}
			nm.Count[cl]++
			heals = append(heals, func(ctx context.Context) error {
				err := heal(ctx)
				ev := NemesisEvent{Phase: "end", Fault: name, Targets: targets}
				if err != nil {
					ev.Detail = err.Error()
				}
				nm.hist.AddNemesis(ev)
				return err
			})
			names = append(names, name)
		}
		window := nm.cfg.FaultMin + time.Duration(nm.rng.Int64N(int64(nm.cfg.FaultMax-nm.cfg.FaultMin)+1))
		sleepCtx(ctx, window)
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 90*time.Second)
		for i := len(heals) - 1; i >= 0; i-- {
			if err := heals[i](hctx); err != nil {
				nm.log.Warn("heal failed", "fault", names[i], "err", err)
			}
		}
		cancel()
	}
	hctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	return nm.HealAll(hctx)
}

// target picks the leader half the time, else a random node; it also
// returns the current leader's ID ("" if none).
func (nm *Nemesis) target(ctx context.Context, members bool) (*Node, string) {
	l, _ := nm.cluster.Leader(ctx)
	lid := ""
	if l != nil {
		lid = l.ID
	}
	if l != nil && nm.rng.IntN(2) == 0 {
		return l, lid
	}
	var cands []*Node
	for _, n := range nm.cluster.Nodes {
		if !members || !n.removed {
			cands = append(cands, n)
		}
	}
	return cands[nm.rng.IntN(len(cands))], lid
}

func ids(ns []*Node) []string {
	var s []string
	for _, n := range ns {
		s = append(s, n.ID)
	}
	return s
}

// inject starts one fault of class cl.
func (nm *Nemesis) inject(ctx context.Context, cl string) (name string, targets []string, heal healFunc, err error) {
	c := nm.cluster
	start := func(name string, t []string, leader, detail string) {
		nm.hist.AddNemesis(NemesisEvent{Phase: "start", Fault: name, Targets: t, Leader: leader, Detail: detail})
		nm.log.Info("nemesis", "fault", name, "targets", t, "leader", leader, "detail", detail)
	}
	switch cl {
	case FaultKill:
		n, lid := nm.target(ctx, false)
		if !n.Running() {
			return "", nil, nil, fmt.Errorf("%s already down", n.ID)
		}
		if err := c.Kill(n); err != nil {
			return "", nil, nil, err
		}
		start(FaultKill, []string{n.ID}, lid, "")
		return FaultKill, []string{n.ID}, func(context.Context) error {
			if n.Running() || n.removed {
				return nil // a combined fault (kill-all, membership) already handled it
			}
			return c.Start(n)
		}, nil

	case FaultKillAll:
		_, lid := nm.target(ctx, false)
		for _, n := range c.Nodes {
			if err := c.Kill(n); err != nil {
				return "", nil, nil, err
			}
		}
		all := ids(c.Nodes)
		start(FaultKillAll, all, lid, "")
		return FaultKillAll, all, func(context.Context) error {
			var errs []error
			for _, n := range c.Nodes {
				if !n.Running() && !n.removed {
					errs = append(errs, c.Start(n))
				}
			}
			return errors.Join(errs...)
		}, nil

	case FaultPause:
		n, lid := nm.target(ctx, false)
		if !n.Running() {
			return "", nil, nil, fmt.Errorf("%s is down", n.ID)
		}
		if err := c.Pause(n); err != nil {
			return "", nil, nil, err
		}
		start(FaultPause, []string{n.ID}, lid, "")
		return FaultPause, []string{n.ID}, func(context.Context) error { return c.Resume(n) }, nil

	case FaultPartition:
		if nm.net == nil {
			return "", nil, nil, errors.New("partition skipped: no network control")
		}
		kind, grudge, desc := nm.pickPartition(ctx)
		if err := nm.net.Partition(ctx, grudge); err != nil {
			return "", nil, nil, err
		}
		_, lid := nm.leaderID(ctx)
		name := FaultPartition + "-" + kind
		start(name, []string{desc}, lid, "")
		return name, []string{desc}, func(ctx context.Context) error { return nm.net.Heal(ctx) }, nil

	case FaultMembership:
		return nm.membership(ctx, start)

	case FaultLoss:
		if nm.net == nil {
			return "", nil, nil, errors.New("loss skipped: no network control")
		}
		p := 0.2 + 0.2*nm.rng.Float64()
		if err := nm.net.Lossy(ctx, p); err != nil {
			return "", nil, nil, err
		}
		_, lid := nm.leaderID(ctx)
		desc := fmt.Sprintf("%.0f%%", p*100)
		start(FaultLoss, []string{desc}, lid, "")
		return FaultLoss, []string{desc}, func(ctx context.Context) error { return nm.net.Heal(ctx) }, nil
	}
	return "", nil, nil, fmt.Errorf("unknown fault %q", cl)
}

func (nm *Nemesis) leaderID(ctx context.Context) (*Node, string) {
	l, _ := nm.cluster.Leader(ctx)
	if l == nil {
		return nil, ""
	}
	return l, l.ID
}

// pickPartition chooses a partition shape and returns its grudge (node index
// -> indexes it cannot talk to, symmetric) and a description like
// "n1|n2,n3".
func (nm *Nemesis) pickPartition(ctx context.Context) (string, map[int][]int, string) {
	n := len(nm.cluster.Nodes)
	kinds := []string{"isolate-leader", "halves"}
	if n >= 5 {
		kinds = append(kinds, "ring", "bridge")
	}
	if len(nm.cfg.Partitions) > 0 {
		kinds = nm.cfg.Partitions
	}
	kind := kinds[nm.rng.IntN(len(kinds))]
	perm := nm.rng.Perm(n)
	grudge := map[int][]int{}
	cut := func(a, b int) {
		if !slices.Contains(grudge[a], b) {
			grudge[a] = append(grudge[a], b)
			grudge[b] = append(grudge[b], a)
		}
	}
	halves := func(side []int) string {
		in := map[int]bool{}
		for _, i := range side {
			in[i] = true
		}
		var a, b []string
		for i := 0; i < n; i++ {
			if in[i] {
				a = append(a, nm.cluster.Nodes[i].ID)
				for j := 0; j < n; j++ {
					if !in[j] {
						cut(i, j)
					}
				}
			} else {
				b = append(b, nm.cluster.Nodes[i].ID)
			}
		}
		return strings.Join(a, ",") + "|" + strings.Join(b, ",")
	}
	switch kind {
	case "isolate-leader":
		l, _ := nm.leaderID(ctx)
		i := perm[0]
		if l != nil {
			i = l.Index
		}
		return kind, grudge, halves([]int{i})
	case "halves":
		return kind, grudge, halves(perm[:n/2])
	case "ring":
		// Each node sees its two ring neighbours: a majority, but no two
		// nodes see the same majority.
		var d []string
		for a := 0; a < n; a++ {
			for b := a + 1; b < n; b++ {
				pa, pb := slices.Index(perm, a), slices.Index(perm, b)
				dist := (pa - pb + n) % n
				if dist != 1 && dist != n-1 {
					cut(a, b)
					d = append(d, nm.cluster.Nodes[a].ID+"x"+nm.cluster.Nodes[b].ID)
				}
			}
		}
		return kind, grudge, "cut " + strings.Join(d, ",")
	default: // bridge: two halves joined by one node that sees both
		b := perm[0]
		left, right := perm[1:1+(n-1)/2], perm[1+(n-1)/2:]
		for _, x := range left {
			for _, y := range right {
				cut(x, y)
			}
		}
		return kind, grudge, fmt.Sprintf("%v|%s|%v", ids(pick(nm.cluster.Nodes, left)), nm.cluster.Nodes[b].ID, ids(pick(nm.cluster.Nodes, right)))
	}
}

func pick(ns []*Node, idx []int) []*Node {
	var out []*Node
	for _, i := range idx {
		out = append(out, ns[i])
	}
	return out
}

// membership removes a node (gracefully or not) and later brings it back.
func (nm *Nemesis) membership(ctx context.Context, start func(string, []string, string, string)) (string, []string, healFunc, error) {
	c := nm.cluster
	var active []*Node
	for _, n := range c.Nodes {
		if !n.removed && n.Running() {
			active = append(active, n)
		}
	}
	if len(active) < len(c.Nodes) {
		return "", nil, nil, errors.New("membership skipped: a node is already out")
	}
	t, lid := nm.target(ctx, true)
	wipe := nm.rng.IntN(2) == 0
	name := FaultMembership + "-leave"
	if wipe {
		name = FaultMembership + "-remove-wipe"
	}
	// Ask the leader (or else a running, unpaused node) other than the
	// target: a request parked in a paused node could take effect later,
	// behind the harness's back. Retry answers that prove nothing happened
	// (no leader yet, e.g. just after another fault healed).
	var err error
	for try := 0; try < 10; try++ {
		var via *Node
		if l, _ := c.Leader(ctx); l != nil && l != t {
			via = l
		}
		for _, n := range active {
			n.mu.Lock()
			paused := n.paused
			n.mu.Unlock()
			if via == nil && n != t && !paused {
				via = n
			}
		}
		if via == nil {
			return "", nil, nil, errors.New("membership skipped: no node to ask")
		}
		cl := c.Client(via)
		if wipe {
			err = cl.RemovePeer(ctx, t.ID)
		} else {
			err = cl.Leave(ctx, t.ID)
		}
		cl.Close()
		if err == nil || !definitelyFailed(err) || !sleepCtx(ctx, 500*time.Millisecond) {
			break
		}
	}
	if err != nil {
		// Not proven failed (e.g. a timeout): the change may still land.
		// HealAll re-adds every node, so the run recovers either way.
		return "", nil, nil, fmt.Errorf("%s %s: %w", name, t.ID, err)
	}
	t.removed = true
	start(name, []string{t.ID}, lid, "")
	// Wait until the remaining voters agree, then take the node down.
	_ = c.WaitReady(ctx, 10*time.Second)
	if wipe {
		_ = c.Kill(t)
		if err := c.Wipe(t); err != nil {
			return "", nil, nil, err
		}
	} else {
		_ = c.Stop(t, 5*time.Second)
	}
	return name, []string{t.ID}, func(ctx context.Context) error { return nm.rejoin(ctx, t) }, nil
}

// rejoin restarts a removed node; it joins through its --join flag, and the
// harness also asks the cluster to add it in case the node does not.
func (nm *Nemesis) rejoin(ctx context.Context, t *Node) error {
	c := nm.cluster
	if !t.Running() {
		if err := c.Start(t); err != nil {
			return err
		}
	}
	t.removed = false
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := c.WaitReady(ctx, 3*time.Second)
		if err == nil {
			return nil
		}
		if l, _ := c.Leader(ctx); l != nil {
			cl := c.Client(l)
			_ = cl.Join(ctx, t.ID, t.RaftAddr(), t.HTTPAddr())
			cl.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("rejoin %s: %w", t.ID, err)
		}
	}
}

// HealAll undoes every fault: heals the network, resumes paused nodes,
// restarts dead ones, re-adds removed ones, and waits for the cluster to be
// ready.
func (nm *Nemesis) HealAll(ctx context.Context) error {
	c := nm.cluster
	var errs []error
	if nm.net != nil {
		errs = append(errs, nm.net.Heal(ctx))
	}
	for _, n := range c.Nodes {
		n.mu.Lock()
		paused := n.paused
		n.mu.Unlock()
		if paused {
			errs = append(errs, c.Resume(n))
		}
		if !n.Running() && !n.removed {
			errs = append(errs, c.Start(n))
		}
	}
	for _, n := range c.Nodes {
		if n.removed {
			errs = append(errs, nm.rejoin(ctx, n))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := c.WaitReady(ctx, 30*time.Second); err == nil {
		return nil
	}
	// A membership change that timed out may still have taken effect (or
	// not): re-add every node (join is idempotent) and wait again.
	if l, _ := c.Leader(ctx); l != nil {
		cl := c.Client(l)
		for _, n := range c.Nodes {
			if err := cl.Join(ctx, n.ID, n.RaftAddr(), n.HTTPAddr()); err != nil {
				nm.log.Warn("re-join after heal", "node", n.ID, "err", err)
			}
		}
		cl.Close()
	}
	return c.WaitReady(ctx, 30*time.Second)
}

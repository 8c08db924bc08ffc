package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// SpawnConfig describes a cluster the tool starts itself, as child processes of its own binary.
type SpawnConfig struct {
	// Binary is the raftkv executable. Default: this process's own (os.Executable).
	Binary string
	// Nodes is the cluster size. Default 3.
	Nodes int
	// Dir holds one data directory and one log file per node. Default: a new temporary
	// directory, removed on Close unless Keep is set or a node failed.
	Dir string
	// Keep leaves Dir in place on Close.
	Keep bool
	// StabilizationTime is passed as --server-stabilization-time, so joiners become voters
	// quickly. Default 1s.
	StabilizationTime time.Duration
	// ExtraArgs are appended to every `raftkv server` command line.
	ExtraArgs []string
	// ReadyTimeout bounds the wait for the cluster to agree on a leader with all nodes voting.
	// Default 30s.
	ReadyTimeout time.Duration
	// Logger receives diagnostics. Default discards.
	Logger *slog.Logger
}

// DefaultSpawnConfig returns the defaults documented on SpawnConfig.
func DefaultSpawnConfig() SpawnConfig {
	return SpawnConfig{Nodes: 3, StabilizationTime: time.Second, ReadyTimeout: 30 * time.Second}
}

// Validate reports the first problem with c, if any.
func (c *SpawnConfig) Validate() error {
	var errs []error
	if c.Nodes < 1 {
		errs = append(errs, fmt.Errorf("nodes %d: must be at least 1", c.Nodes))
	}
	if c.ReadyTimeout <= 0 {
		errs = append(errs, errors.New("ready timeout must be positive"))
	}
	if c.StabilizationTime < 0 {
		errs = append(errs, errors.New("stabilization time must not be negative"))
	}
	return errors.Join(errs...)
}

// process is a running node. Kill sends SIGKILL and returns once the process has exited.
type process interface {
	Kill() error
}

// starter starts a node with the given `raftkv` arguments. The real one execs the binary;
// tests substitute in-process fakes.
type starter func(n *spawnedNode, args []string) (process, error)

// spawnedNode is one member of a spawned cluster.
type spawnedNode struct {
	ID       string
	HTTPAddr string
	RaftAddr string
	DataDir  string
	LogPath  string

	proc process // nil while stopped
}

// spawnedCluster owns its nodes' processes: Close kills every one still running.
type spawnedCluster struct {
	cfg     SpawnConfig
	start   starter
	hc      *http.Client
	log     *slog.Logger
	nodes   []*spawnedNode
	ownsDir bool

	mu     sync.Mutex
	failed bool // a node misbehaved: keep the directory for its logs
}

// startCluster starts cfg.Nodes nodes (the first bootstraps, the others join it) and waits
// until they agree on a leader and every node votes.
func startCluster(ctx context.Context, cfg SpawnConfig, start starter) (_ *spawnedCluster, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("spawn config: %w", err)
	}
	c := &spawnedCluster{cfg: cfg, start: start, hc: newHTTPClient(cfg.Nodes, 0, 2*time.Second, nil), log: cfg.Logger}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.cfg.Dir == "" {
		if c.cfg.Dir, err = os.MkdirTemp("", "raftkv-bench-*"); err != nil {
			return nil, err
		}
		c.ownsDir = true
	}
	defer func() {
		if err != nil {
			c.markFailed()
			err = errors.Join(err, c.Close())
		}
	}()
	addrs, err := freePorts(2 * cfg.Nodes)
	if err != nil {
		return c, fmt.Errorf("pick ports: %w", err)
	}
	for i := range cfg.Nodes {
		id := fmt.Sprintf("n%d", i+1)
		n := &spawnedNode{
			ID:       id,
			HTTPAddr: addrs[2*i],
			RaftAddr: addrs[2*i+1],
			DataDir:  filepath.Join(c.cfg.Dir, id),
			LogPath:  filepath.Join(c.cfg.Dir, id+".log"),
		}
		if err := os.MkdirAll(n.DataDir, 0o755); err != nil {
			return c, err
		}
		c.nodes = append(c.nodes, n)
	}
	if err := c.startNode(c.nodes[0], ""); err != nil {
		return c, err
	}
	// The joiners need the first node to lead before they can join through it.
	if err := c.poll(ctx, cfg.ReadyTimeout, "n1 to lead", func(ctx context.Context) bool {
		s, err := nodeStatus(ctx, c.hc, c.nodes[0].HTTPAddr)
		return err == nil && s.IsLeader()
	}); err != nil {
		return c, err
	}
	for _, n := range c.nodes[1:] {
		if err := c.startNode(n, c.nodes[0].HTTPAddr); err != nil {
			return c, err
		}
	}
	if _, err := c.waitReady(ctx); err != nil {
		return c, err
	}
	return c, nil
}

// args is the `raftkv server` command line of n: it bootstraps when join is "".
func (c *spawnedCluster) args(n *spawnedNode, join string) []string {
	a := []string{"server",
		"--id", n.ID,
		"--data-dir", n.DataDir,
		"--http-addr", n.HTTPAddr,
		"--raft-addr", n.RaftAddr,
	}
	if join == "" {
		a = append(a, "--bootstrap")
	} else {
		a = append(a, "--join", join)
	}
	if c.cfg.StabilizationTime > 0 {
		a = append(a, "--server-stabilization-time", c.cfg.StabilizationTime.String())
	}
	return append(a, c.cfg.ExtraArgs...)
}

func (c *spawnedCluster) startNode(n *spawnedNode, join string) error {
	args := c.args(n, join)
	c.log.Info("start node", "id", n.ID, "args", args)
	p, err := c.start(n, args)
	if err != nil {
		return fmt.Errorf("start %s: %w", n.ID, err)
	}
	n.proc = p
	return nil
}

// restart starts a stopped node again with its original flags, joining through a running node
// rather than bootstrapping.
func (c *spawnedCluster) restart(n *spawnedNode) error {
	var via string
	for _, o := range c.nodes {
		if o != n && o.proc != nil {
			via = o.HTTPAddr
			break
		}
	}
	if via == "" {
		via = n.HTTPAddr // a one-node cluster rejoins itself; its data dir already says who it is
	}
	return c.startNode(n, via)
}

// kill SIGKILLs n and waits for it to exit.
func (c *spawnedCluster) kill(n *spawnedNode) error {
	if n.proc == nil {
		return nil
	}
	err := n.proc.Kill()
	n.proc = nil
	return err
}

func (c *spawnedCluster) markFailed() {
	c.mu.Lock()
	c.failed = true
	c.mu.Unlock()
}

// Close kills every node still running and removes the directory the cluster created,
// unless Keep is set or a node failed (its logs are then worth reading).
func (c *spawnedCluster) Close() error {
	var errs []error
	for _, n := range c.nodes {
		if err := c.kill(n); err != nil {
			errs = append(errs, fmt.Errorf("kill %s: %w", n.ID, err))
		}
	}
	c.hc.CloseIdleConnections()
	c.mu.Lock()
	keep := c.cfg.Keep || c.failed || !c.ownsDir
	c.mu.Unlock()
	if keep {
		c.log.Info("cluster directory kept", "dir", c.cfg.Dir)
	} else if err := os.RemoveAll(c.cfg.Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// running returns the nodes with a live process.
func (c *spawnedCluster) running() []*spawnedNode {
	var out []*spawnedNode
	for _, n := range c.nodes {
		if n.proc != nil {
			out = append(out, n)
		}
	}
	return out
}

// waitReady waits until every running node names the same leader and that leader lists
// every node of the cluster as a voter. It returns the leader.
func (c *spawnedCluster) waitReady(ctx context.Context) (*spawnedNode, error) {
	var leader *spawnedNode
	err := c.poll(ctx, c.cfg.ReadyTimeout, "cluster to be ready", func(ctx context.Context) bool {
		leader = nil
		var leaderID string
		for _, n := range c.running() {
			s, err := nodeStatus(ctx, c.hc, n.HTTPAddr)
			if err != nil || s.LeaderID == "" || (leaderID != "" && s.LeaderID != leaderID) {
				return false
			}
			leaderID = s.LeaderID
		}
		leader = c.byID(leaderID)
		if leader == nil || leader.proc == nil {
			return false
		}
		p, err := peers(ctx, c.hc, leader.HTTPAddr)
		return err == nil && len(p) == len(c.nodes)
	})
	return leader, err
}

func (c *spawnedCluster) byID(id string) *spawnedNode {
	i := slices.IndexFunc(c.nodes, func(n *spawnedNode) bool { return n.ID == id })
	if i < 0 {
		return nil
	}
	return c.nodes[i]
}

// currentLeader asks the running nodes who leads and returns that node and its status.
func (c *spawnedCluster) currentLeader(ctx context.Context) (*spawnedNode, NodeStatus, error) {
	for _, n := range c.running() {
		s, err := nodeStatus(ctx, c.hc, n.HTTPAddr)
		if err != nil || s.LeaderID == "" {
			continue
		}
		l := c.byID(s.LeaderID)
		if l == nil || l.proc == nil {
			continue
		}
		if l == n {
			return l, s, nil
		}
		ls, err := nodeStatus(ctx, c.hc, l.HTTPAddr)
		if err == nil && ls.IsLeader() {
			return l, ls, nil
		}
	}
	return nil, NodeStatus{}, errors.New("no running node knows a live leader")
}

// poll calls cond every 10ms until it holds, ctx ends, or timeout passes.
func (c *spawnedCluster) poll(ctx context.Context, timeout time.Duration, what string, cond func(context.Context) bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if cond(ctx) {
			return nil
		}
		select {
		case <-ctx.Done():
			c.markFailed()
			return fmt.Errorf("waiting for %s: %w (node logs in %s)", what, ctx.Err(), c.cfg.Dir)
		case <-t.C:
		}
	}
}

// freePorts returns n distinct loopback addresses that were free a moment ago.
func freePorts(n int) ([]string, error) {
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	var out []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		out = append(out, l.Addr().String())
	}
	return out, nil
}

// execStarter runs `binary args...` as a child in its own process group, with its output
// appended to the node's log file.
func execStarter(binary string) starter {
	return func(n *spawnedNode, args []string) (process, error) {
		logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(logf, "=== %s %v\n", time.Now().UTC().Format(time.RFC3339Nano), args)
		cmd := exec.Command(binary, args...)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = childProcAttr()
		if err := cmd.Start(); err != nil {
			logf.Close()
			return nil, err
		}
		p := &execProcess{cmd: cmd, done: make(chan struct{})}
		go func() {
			p.err = cmd.Wait()
			logf.Close()
			close(p.done)
		}()
		return p, nil
	}
}

type execProcess struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// PID is the node's process ID.
func (p *execProcess) PID() int { return p.cmd.Process.Pid }

func (p *execProcess) Kill() error {
	if err := killGroup(p.cmd.Process); err != nil {
		select {
		case <-p.done: // already gone
			return nil
		default:
			return err
		}
	}
	<-p.done
	return nil
}

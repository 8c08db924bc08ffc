package jepsenlite

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Node is one raftkv server process the harness controls.
type Node struct {
	Index    int // 0-based; node ID is "n<Index+1>"
	ID       string
	IP       string
	HTTPPort int
	RaftPort int
	DataDir  string
	LogPath  string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	paused  bool
	starts  int
	removed bool // not in the raft configuration (membership nemesis)
}

// HTTPAddr is "ip:port" of the node's API.
func (n *Node) HTTPAddr() string { return net.JoinHostPort(n.IP, strconv.Itoa(n.HTTPPort)) }

// RaftAddr is "ip:port" of the node's raft transport.
func (n *Node) RaftAddr() string { return net.JoinHostPort(n.IP, strconv.Itoa(n.RaftPort)) }

// Running reports whether the process is alive (possibly paused).
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// ClusterConfig describes the cluster to start.
type ClusterConfig struct {
	// Binary is the raftkv executable.
	Binary string
	// Nodes is the cluster size (3 or 5).
	Nodes int
	// Dir receives data/<id> and logs/<id>.log.
	Dir string
	// Net, when set, runs each node in its namespace; otherwise every node
	// listens on 127.0.0.1 with free ports.
	Net *Network
	// Proxy (without Net) routes every node-to-node link through a proxy
	// of Cluster.Proxies: each node starts with --dial-override.
	Proxy bool
	// ExtraArgs are appended to every `raftkv server` command line.
	ExtraArgs []string
	// Logger receives the harness's own messages; nil discards.
	Logger *slog.Logger
}

// Cluster controls the nodes' processes. It never speaks raft: membership
// goes through the HTTP API like any operator's would.
type Cluster struct {
	cfg   ClusterConfig
	Nodes []*Node
	log   *slog.Logger
	// Proxies carry the node-to-node links when ClusterConfig.Proxy is set.
	Proxies *ProxyNet
}

// logf logs a harness message about the cluster.
func (c *Cluster) logf(msg string, args ...any) {
	if c.log != nil {
		c.log.Info(msg, args...)
	}
}

// NewCluster lays out the nodes without starting them.
func NewCluster(cfg ClusterConfig) (*Cluster, error) {
	c := &Cluster{cfg: cfg, log: cfg.Logger}
	for _, d := range []string{"data", "logs"} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("cluster dir: %w", err)
		}
	}
	for i := 0; i < cfg.Nodes; i++ {
		n := &Node{Index: i, ID: fmt.Sprintf("n%d", i+1)}
		if cfg.Net != nil {
			n.IP, n.HTTPPort, n.RaftPort = cfg.Net.IP(i), 8500, 8300
		} else {
			n.IP = "127.0.0.1"
			ports, err := freePorts(2)
			if err != nil {
				return nil, err
			}
			n.HTTPPort, n.RaftPort = ports[0], ports[1]
		}
		n.DataDir = filepath.Join(cfg.Dir, "data", n.ID)
		n.LogPath = filepath.Join(cfg.Dir, "logs", n.ID+".log")
		c.Nodes = append(c.Nodes, n)
	}
	if cfg.Proxy && cfg.Net == nil {
		pn, err := NewProxyNet(c.Nodes)
		if err != nil {
			return nil, err
		}
		c.Proxies = pn
	}
	return c, nil
}

func freePorts(k int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for i := 0; i < k; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func (c *Cluster) args(n *Node, bootstrap bool) []string {
	a := []string{"server", "--id", n.ID, "--data-dir", n.DataDir,
		"--http-addr", n.HTTPAddr(), "--raft-addr", n.RaftAddr(),
		"--server-stabilization-time", "1s", "--log-format", "text", "--log-level", "info"}
	if bootstrap {
		a = append(a, "--bootstrap")
	} else {
		var join []string
		for _, o := range c.Nodes {
			if o != n {
				join = append(join, o.HTTPAddr())
			}
		}
		a = append(a, "--join", strings.Join(join, ","))
	}
	if c.Proxies != nil {
		a = append(a, "--dial-override", c.Proxies.DialOverride(n.Index))
	}
	return append(a, c.cfg.ExtraArgs...)
}

// Start starts n's process (which must not be running). Only the first start
// of the first node bootstraps; every other start joins.
func (c *Cluster) Start(n *Node) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		select {
		case <-n.exited:
		default:
			return fmt.Errorf("start %s: already running", n.ID)
		}
	}
	bootstrap := n.Index == 0 && n.starts == 0
	args := c.args(n, bootstrap)
	var cmd *exec.Cmd
	if c.cfg.Net != nil {
		cmd = c.cfg.Net.Command(n.Index, c.cfg.Binary, args...)
	} else {
		cmd = exec.Command(c.cfg.Binary, args...)
	}
	lf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("start %s: %w", n.ID, err)
	}
	fmt.Fprintf(lf, "=== jepsen-lite %s: start #%d: %s %s\n", time.Now().UTC().Format(time.RFC3339Nano), n.starts+1, c.cfg.Binary, strings.Join(args, " "))
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // a ^C to the harness is not a fault
	if err := cmd.Start(); err != nil {
		lf.Close()
		return fmt.Errorf("start %s: %w", n.ID, err)
	}
	n.cmd, n.exited, n.paused = cmd, make(chan struct{}), false
	n.starts++
	c.logf("node started", "node", n.ID, "pid", cmd.Process.Pid, "bootstrap", bootstrap, "start", n.starts)
	exited := n.exited
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(lf, "=== jepsen-lite %s: exited: %v\n", time.Now().UTC().Format(time.RFC3339Nano), err)
		lf.Close()
		close(exited)
	}()
	return nil
}

// signal sends sig to n's process.
func (n *Node) signal(sig syscall.Signal) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || n.cmd.Process == nil {
		return fmt.Errorf("%s: not started", n.ID)
	}
	return n.cmd.Process.Signal(sig)
}

// Kill sends SIGKILL and waits for the process to go.
func (c *Cluster) Kill(n *Node) error {
	if !n.Running() {
		return nil
	}
	_ = n.signal(syscall.SIGCONT)
	if err := n.signal(syscall.SIGKILL); err != nil {
		return err
	}
	return n.wait(10 * time.Second)
}

// Stop sends SIGTERM, then SIGKILL after grace.
func (c *Cluster) Stop(n *Node, grace time.Duration) error {
	if !n.Running() {
		return nil
	}
	_ = n.signal(syscall.SIGCONT)
	_ = n.signal(syscall.SIGTERM)
	if n.wait(grace) == nil {
		return nil
	}
	return c.Kill(n)
}

func (n *Node) wait(d time.Duration) error {
	n.mu.Lock()
	ch := n.exited
	n.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-time.After(d):
		return fmt.Errorf("%s: still running after %s", n.ID, d)
	}
}

// Pause stops the process with SIGSTOP; Resume continues it.
func (c *Cluster) Pause(n *Node) error {
	if err := n.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	n.mu.Lock()
	n.paused = true
	n.mu.Unlock()
	return nil
}

func (c *Cluster) Resume(n *Node) error {
	n.mu.Lock()
	n.paused = false
	n.mu.Unlock()
	if !n.Running() {
		return nil // killed meanwhile (combined faults): nothing to continue
	}
	return n.signal(syscall.SIGCONT)
}

// Wipe deletes n's data dir (the process must be down).
func (c *Cluster) Wipe(n *Node) error {
	if n.Running() {
		return fmt.Errorf("wipe %s: running", n.ID)
	}
	return os.RemoveAll(n.DataDir)
}

// Close kills every node (and stops the proxies).
func (c *Cluster) Close() {
	for _, n := range c.Nodes {
		_ = c.Kill(n)
	}
	if c.Proxies != nil {
		c.Proxies.Close()
	}
}

// Client returns an API client of n (short timeout, for status and control).
func (c *Cluster) Client(n *Node) *Client { return NewClient(n.ID, n.HTTPAddr(), 2*time.Second) }

// statuses polls every running node's status concurrently.
func (c *Cluster) statuses(ctx context.Context) map[string]NodeStatus {
	var mu sync.Mutex
	var wg sync.WaitGroup
	out := map[string]NodeStatus{}
	for _, n := range c.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			cl := NewClient(n.ID, n.HTTPAddr(), time.Second)
			defer cl.Close()
			if s, err := cl.Status(cctx); err == nil {
				mu.Lock()
				out[n.ID] = s
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out
}

// Leader returns the node that claims leadership with the highest term, or
// nil when none does.
func (c *Cluster) Leader(ctx context.Context) (*Node, NodeStatus) {
	var best *Node
	var bs NodeStatus
	st := c.statuses(ctx)
	for _, n := range c.Nodes {
		s, ok := st[n.ID]
		if ok && s.State == "Leader" && (best == nil || s.Term > bs.Term) {
			best, bs = n, s
		}
	}
	return best, bs
}

// Node returns the node with the given ID.
func (c *Cluster) Node(id string) *Node {
	for _, n := range c.Nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// ErrNotReady is returned when the cluster does not become ready in time.
var ErrNotReady = errors.New("cluster not ready")

// WaitReady polls until every member node agrees on one leader and that
// leader lists all members as voters.
func (c *Cluster) WaitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		st := c.statuses(ctx)
		leader := ""
		ok := true
		members := 0
		for _, n := range c.Nodes {
			if n.removed {
				continue
			}
			members++
			s, got := st[n.ID]
			switch {
			case !got:
				ok, last = false, n.ID+" not answering"
			case s.LeaderID == "":
				ok, last = false, n.ID+" knows no leader"
			case leader == "":
				leader = s.LeaderID
			case leader != s.LeaderID:
				ok, last = false, fmt.Sprintf("leaders disagree: %s vs %s", leader, s.LeaderID)
			}
		}
		if ok {
			if ln := c.Node(leader); ln != nil {
				cl := c.Client(ln)
				peers, err := cl.Peers(ctx)
				cl.Close()
				if err == nil && len(peers) == members {
					return nil
				}
				last = fmt.Sprintf("leader %s lists %d voters, want %d (err %v)", leader, len(peers), members, err)
			}
		}
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return fmt.Errorf("%w after %s: %s", ErrNotReady, timeout, last)
		}
	}
}

// Boot starts the first node, waits for it to lead, then starts the rest.
func (c *Cluster) Boot(ctx context.Context, timeout time.Duration) error {
	if err := c.Start(c.Nodes[0]); err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		if l, _ := c.Leader(ctx); l != nil {
			break
		}
		if !c.Nodes[0].Running() {
			return fmt.Errorf("%s exited during bootstrap: see %s", c.Nodes[0].ID, c.Nodes[0].LogPath)
		}
		if time.Now().After(deadline) || !sleepCtx(ctx, 100*time.Millisecond) {
			return fmt.Errorf("%w: %s never became leader", ErrNotReady, c.Nodes[0].ID)
		}
	}
	for _, n := range c.Nodes[1:] {
		if err := c.Start(n); err != nil {
			return err
		}
	}
	return c.WaitReady(ctx, time.Until(deadline))
}

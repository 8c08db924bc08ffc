// Package testcluster starts real raftkv nodes inside a test process: real
// Raft over TCP on loopback, real bbolt files in t.TempDir, and the real HTTP
// API on a loopback port. Tests of cluster and httpapi use it; nothing else
// should.
package testcluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/httpapi"
)

// Node is one in-process server.
type Node struct {
	ID       string
	Cfg      cluster.Config
	Node     *cluster.Node // nil while stopped
	API      *httpapi.API
	HTTPAddr string
	srv      *http.Server
}

// Running reports whether the node is started.
func (n *Node) Running() bool { return n.Node != nil }

// URL is the node's HTTP base URL.
func (n *Node) URL() string { return "http://" + n.HTTPAddr }

// Cluster is a set of in-process nodes.
type Cluster struct {
	t     testing.TB
	Nodes []*Node
	log   *slog.Logger
	api   func(*httpapi.Config) // adjusts every node's API config; may be nil
}

// Option adjusts every node's config before start.
type Option func(*cluster.Config)

// Start starts n nodes: the first bootstraps, the others join through it.
// It returns once every node is a voter and a leader is ready.
func Start(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	return StartWithAPI(t, n, nil, opts...)
}

// StartWithAPI is Start with api applied to every node's API config on
// every start (for example to turn ACLs on).
func StartWithAPI(t testing.TB, n int, api func(*httpapi.Config), opts ...Option) *Cluster {
	t.Helper()
	level := slog.LevelError
	if os.Getenv("RAFTKV_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	c := &Cluster{t: t, api: api, log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))}
	base := t.TempDir()
	for i := 1; i <= n; i++ {
		cfg := cluster.DefaultConfig()
		cfg.ID = fmt.Sprintf("n%d", i)
		cfg.DataDir = filepath.Join(base, cfg.ID)
		cfg.RaftAddr = "127.0.0.1:0"
		cfg.Bootstrap = i == 1
		cfg.ServerStabilizationTime = 500 * time.Millisecond
		for _, o := range opts {
			o(&cfg)
		}
		c.Nodes = append(c.Nodes, &Node{ID: cfg.ID, Cfg: cfg})
	}
	t.Cleanup(c.StopAll)
	for i := range c.Nodes {
		c.StartNode(i)
		if i == 0 {
			c.WaitLeader(10 * time.Second)
			continue
		}
		c.join(c.Nodes[i])
	}
	c.WaitVoters(n, 30*time.Second)
	return c
}

// StartNode (re)starts node i with its data dir and addresses.
func (c *Cluster) StartNode(i int) {
	c.t.Helper()
	nd := c.Nodes[i]
	if nd.Running() {
		c.t.Fatalf("node %s already running", nd.ID)
	}
	httpAddr := nd.HTTPAddr
	if httpAddr == "" {
		httpAddr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", httpAddr)
	if err != nil {
		c.t.Fatalf("listen http for %s: %v", nd.ID, err)
	}
	nd.HTTPAddr = ln.Addr().String()
	cfg := nd.Cfg
	cfg.HTTPAddr = nd.HTTPAddr
	cfg.Logger = c.log
	cfg.FetchStats = func(ctx context.Context, httpAddr string) (cluster.PeerStats, error) {
		lc, term, idx, err := client.New(httpAddr, 2*time.Second).RaftStats(ctx)
		return cluster.PeerStats{LastContact: lc, LastTerm: term, LastIndex: idx}, err
	}
	node, err := cluster.Open(cfg)
	if err != nil {
		ln.Close()
		c.t.Fatalf("open node %s: %v", nd.ID, err)
	}
	// Keep the raft port chosen at first start for restarts.
	nd.Cfg.RaftAddr = node.RaftAddr()
	nd.Cfg.Bootstrap = false
	nd.Node = node
	apiCfg := httpapi.Config{Node: node, Logger: c.log}
	if c.api != nil {
		c.api(&apiCfg)
	}
	nd.API = httpapi.New(apiCfg)
	nd.srv = &http.Server{Handler: nd.API, ReadHeaderTimeout: 5 * time.Second}
	go func(srv *http.Server) { _ = srv.Serve(ln) }(nd.srv) // stopped by StopNode
}

// StopNode stops node i gracefully (a leader hands over first).
func (c *Cluster) StopNode(i int) {
	nd := c.Nodes[i]
	if !nd.Running() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = nd.srv.Close()
	if err := nd.Node.Close(ctx); err != nil {
		c.t.Errorf("close node %s: %v", nd.ID, err)
	}
	nd.API.Close()
	nd.Node, nd.API, nd.srv = nil, nil, nil
}

// StopAll stops every running node.
func (c *Cluster) StopAll() {
	for i := range c.Nodes {
		c.StopNode(i)
	}
}

func (c *Cluster) join(nd *Node) {
	c.t.Helper()
	err := Poll(30*time.Second, func() error {
		l := c.Leader()
		if l == nil {
			return errors.New("no leader")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return l.Node.Join(ctx, cluster.JoinRequest{ID: nd.ID, RaftAddr: nd.Node.RaftAddr(), HTTPAddr: nd.HTTPAddr, Fresh: nd.Node.Fresh()})
	})
	if err != nil {
		c.t.Fatalf("join %s: %v", nd.ID, err)
	}
}

// Leader returns the running node that is leader and ready for reads, or nil.
func (c *Cluster) Leader() *Node {
	for _, nd := range c.Nodes {
		if nd.Running() {
			if s := nd.Node.Status(); s.State == "Leader" && s.ReadReady {
				return nd
			}
		}
	}
	return nil
}

// WaitLeader waits for a ready leader.
func (c *Cluster) WaitLeader(timeout time.Duration) *Node {
	c.t.Helper()
	var l *Node
	if err := Poll(timeout, func() error {
		if l = c.Leader(); l == nil {
			return errors.New("no ready leader")
		}
		return nil
	}); err != nil {
		c.t.Fatal(err)
	}
	return l
}

// WaitVoters waits until the leader's configuration has n voters.
func (c *Cluster) WaitVoters(n int, timeout time.Duration) {
	c.t.Helper()
	if err := Poll(timeout, func() error {
		l := c.Leader()
		if l == nil {
			return errors.New("no leader")
		}
		servers, _, err := l.Node.Configuration()
		if err != nil {
			return err
		}
		v := 0
		for _, s := range servers {
			if s.Voter {
				v++
			}
		}
		if v != n {
			return fmt.Errorf("%d voters, want %d", v, n)
		}
		return nil
	}); err != nil {
		c.t.Fatal(err)
	}
}

// Follower returns a running node that is not the leader.
func (c *Cluster) Follower() *Node {
	l := c.Leader()
	for _, nd := range c.Nodes {
		if nd.Running() && nd != l {
			return nd
		}
	}
	return nil
}

// Index returns the position of nd in Nodes.
func (c *Cluster) Index(nd *Node) int {
	for i, x := range c.Nodes {
		if x == nd {
			return i
		}
	}
	return -1
}

// Poll calls f every 20ms until it returns nil or timeout passes, and
// returns the last error.
func Poll(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %w", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

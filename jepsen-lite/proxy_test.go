package jepsenlite

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// echoServer accepts connections on 127.0.0.1 and echoes what it reads.
func echoServer(t *testing.T) *net.TCPAddr {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return l.Addr().(*net.TCPAddr)
}

// exchange connects to addr, sends a line and expects it echoed back
// within d.
func exchange(addr string, d time.Duration) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	return roundTrip(c, d)
}

func roundTrip(c net.Conn, d time.Duration) bool {
	c.SetDeadline(time.Now().Add(d))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return false
	}
	b := make([]byte, 5)
	if _, err := io.ReadFull(c, b); err != nil {
		return false
	}
	return string(b) == "ping\n"
}

// TestProxyPartitionBlocksNodeTraffic: cutting a link must stop every
// channel it claims to (raft and HTTP, both directions, connections already
// open as well as new ones) and none it does not (other links, the
// harness's direct connections); healing restores it.
func TestProxyPartitionBlocksNodeTraffic(t *testing.T) {
	// Peers' raft and HTTP "servers" are echo servers.
	nodes := make([]*Node, 3)
	for i := range nodes {
		nodes[i] = &Node{Index: i, ID: fmt.Sprintf("n%d", i+1), IP: "127.0.0.1"}
		for _, port := range []*int{&nodes[i].RaftPort, &nodes[i].HTTPPort} {
			*port = echoServer(t).Port
		}
	}
	pn, err := NewProxyNet(nodes)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pn.Close)
	kinds := []string{LinkRaft, LinkHTTP}
	// Generous when traffic should pass, short when it should not (a
	// blackholed exchange only ends at its deadline).
	const pass, stop = 2 * time.Second, 300 * time.Millisecond
	via := func(i, j int, kind string, d time.Duration) bool { return exchange(pn.Link(i, j, kind).Addr(), d) }
	direct := func(j int, kind string) bool {
		if kind == LinkRaft {
			return exchange(nodes[j].RaftAddr(), pass)
		}
		return exchange(nodes[j].HTTPAddr(), pass)
	}
	for i := 0; i < 3; i++ {
		for j := 0; j < 3; j++ {
			for _, k := range kinds {
				if i != j && !via(i, j, k, pass) {
					t.Fatalf("before partition: node %d cannot reach node %d's %s", i, j, k)
				}
			}
		}
	}
	// A connection open across the cut must be closed by it.
	open, err := net.Dial("tcp", pn.Link(0, 1, LinkRaft).Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if !roundTrip(open, pass) {
		t.Fatal("open connection does not work before the cut")
	}
	// Isolate node 0.
	ctx := context.Background()
	if err := pn.Partition(ctx, map[int][]int{0: {1, 2}, 1: {0}, 2: {0}}); err != nil {
		t.Fatal(err)
	}
	if roundTrip(open, stop) {
		t.Error("a connection open before the cut still carries traffic")
	}
	for _, k := range kinds {
		for _, pair := range [][2]int{{0, 1}, {1, 0}, {0, 2}, {2, 0}} {
			if via(pair[0], pair[1], k, stop) {
				t.Errorf("partitioned: node %d reached node %d's %s", pair[0], pair[1], k)
			}
		}
		if !via(1, 2, k, pass) || !via(2, 1, k, pass) {
			t.Errorf("nodes 1 and 2 are on the same side but cannot talk (%s)", k)
		}
		for j := 0; j < 3; j++ {
			if !direct(j, k) {
				t.Errorf("harness cannot reach node %d's %s during the partition", j, k)
			}
		}
	}
	// Loss is refused (the nemesis records it as skipped), not faked.
	if err := pn.Lossy(ctx, 0.3); err == nil {
		t.Error("Lossy through proxies: want an error")
	}
	// A new partition replaces the old one: only 1-2 cut now.
	if err := pn.Partition(ctx, map[int][]int{1: {2}, 2: {1}}); err != nil {
		t.Fatal(err)
	}
	if !via(0, 1, LinkHTTP, pass) || via(2, 1, LinkHTTP, stop) || via(1, 2, LinkRaft, stop) {
		t.Error("repartition did not replace the previous grudge")
	}
	if err := pn.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		for j := 0; j < 3; j++ {
			for _, k := range kinds {
				if i != j && !via(i, j, k, pass) {
					t.Errorf("after heal: node %d cannot reach node %d's %s", i, j, k)
				}
			}
		}
	}
}

// TestProxyDialOverride: every start of a node (boot, restart, rejoin
// after a wipe) carries the dial override, mapping each peer's raft and
// HTTP address to that node's own proxy for it, and never the node itself.
func TestProxyDialOverride(t *testing.T) {
	c, err := NewCluster(ClusterConfig{Nodes: 3, Dir: t.TempDir(), Proxy: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	for _, n := range c.Nodes {
		for _, boot := range []bool{true, false} {
			args := c.args(n, boot)
			k := slices.Index(args, "--dial-override")
			if k < 0 || k+1 >= len(args) {
				t.Fatalf("%s: no --dial-override in %q", n.ID, args)
			}
			got := map[string]string{}
			for _, kv := range strings.Split(args[k+1], ",") {
				from, to, _ := strings.Cut(kv, "=")
				got[from] = to
			}
			want := map[string]string{}
			for _, o := range c.Nodes {
				if o != n {
					want[o.RaftAddr()] = c.Proxies.Link(n.Index, o.Index, LinkRaft).Addr()
					want[o.HTTPAddr()] = c.Proxies.Link(n.Index, o.Index, LinkHTTP).Addr()
				}
			}
			if !mapsEqual(got, want) {
				t.Errorf("%s: dial override %v, want %v", n.ID, got, want)
			}
		}
	}
	// Without Proxy, no override.
	plain, err := NewCluster(ClusterConfig{Nodes: 3, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(plain.args(plain.Nodes[1], false), "--dial-override") {
		t.Error("--dial-override without proxies")
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

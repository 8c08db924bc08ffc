package jepsenlite

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// needNetns skips a test that needs real namespaces, saying why.
func needNetns(t *testing.T) {
	t.Helper()
	if err := NetnsAvailable(); err != nil {
		t.Skipf("real partitions unavailable, skipping: %v", err)
	}
}

// TestPartitionBlocksNodeTraffic: a partition must stop every channel it
// claims to (any port between cut nodes) and none it does not (the harness
// still reaches every node; uncut nodes still reach each other).
func TestPartitionBlocksNodeTraffic(t *testing.T) {
	needNetns(t)
	ctx := context.Background()
	nw, err := NewNetwork(ctx, 3, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nw.Close)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// A listener in every namespace, on two ports (raft-like and http-like).
	ports := []int{8300, 8500}
	for i := 0; i < 3; i++ {
		for _, p := range ports {
			cmd := nw.Command(i, self)
			cmd.Env = append(os.Environ(), fmt.Sprintf("JEPSEN_LITE_HELPER=listen:%s:%d", nw.IP(i), p))
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		}
	}
	fromHost := func(j, p int) bool {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", nw.IP(j), p), time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	between := func(i, j, p int) bool {
		cmd := nw.Command(i, self)
		cmd.Env = append(os.Environ(), fmt.Sprintf("JEPSEN_LITE_HELPER=dial:%s:%d", nw.IP(j), p))
		return cmd.Run() == nil
	}
	waitUp := func(j, p int) {
		deadline := time.Now().Add(5 * time.Second)
		for !fromHost(j, p) {
			if time.Now().After(deadline) {
				t.Fatalf("listener on node %d port %d never came up", j, p)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for j := 0; j < 3; j++ {
		for _, p := range ports {
			waitUp(j, p)
		}
	}
	if !between(0, 1, 8300) {
		t.Fatal("before partition: node 0 cannot reach node 1")
	}
	// Isolate node 0.
	if err := nw.Partition(ctx, map[int][]int{0: {1, 2}, 1: {0}, 2: {0}}); err != nil {
		t.Fatal(err)
	}
	for _, p := range ports {
		for _, pair := range [][2]int{{0, 1}, {1, 0}, {0, 2}, {2, 0}} {
			if between(pair[0], pair[1], p) {
				t.Errorf("partitioned: node %d reached node %d on port %d", pair[0], pair[1], p)
			}
		}
		if !between(1, 2, p) || !between(2, 1, p) {
			t.Errorf("nodes 1 and 2 are on the same side but cannot talk on port %d", p)
		}
		for j := 0; j < 3; j++ {
			if !fromHost(j, p) {
				t.Errorf("harness cannot reach node %d port %d during the partition", j, p)
			}
		}
	}
	if err := nw.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	if !between(0, 1, 8300) || !between(2, 0, 8500) {
		t.Error("after heal: node 0 still cut off")
	}
	// Loss at probability 1 drops everything between nodes, nothing from
	// the harness (proves the statistic rules load and match).
	if err := nw.Lossy(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if between(1, 2, 8300) {
		t.Error("100% loss: node 1 still reaches node 2")
	}
	if !fromHost(2, 8300) {
		t.Error("100% loss: harness cannot reach node 2")
	}
	if err := nw.Heal(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestNetworkCleanup: closing removes the namespaces and the bridge.
func TestNetworkCleanup(t *testing.T) {
	needNetns(t)
	nw, err := NewNetwork(context.Background(), 3, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ns, br := nw.NS(0), nw.bridge()
	nw.Close()
	if out, _ := exec.Command("ip", "netns", "list").Output(); contains(string(out), ns) {
		t.Errorf("namespace %s left behind: %s", ns, out)
	}
	if exec.Command("ip", "link", "show", br).Run() == nil {
		t.Errorf("bridge %s left behind", br)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub && (i+len(sub) == len(s) || s[i+len(sub)] == ' ' || s[i+len(sub)] == '\n') {
			return true
		}
	}
	return false
}

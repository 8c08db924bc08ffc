package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func fakeSpawn(t *testing.T) SpawnConfig {
	s := DefaultSpawnConfig()
	s.Dir = t.TempDir()
	s.ReadyTimeout = 10 * time.Second
	return s
}

func TestFailoverFake(t *testing.T) {
	fc := newFakeCluster()
	cfg := DefaultFailoverConfig()
	cfg.Spawn = fakeSpawn(t)
	cfg.Kills = 3
	cfg.Clients = 4
	cfg.Settle = 20 * time.Millisecond
	cfg.RecoverTimeout = 10 * time.Second
	var progress bytes.Buffer
	cfg.Progress = &progress
	rep, err := failover(context.Background(), cfg, fc.starter(t))
	if err != nil {
		t.Fatalf("failover: %v", err)
	}
	if got := len(rep.Kills); got != cfg.Kills {
		t.Fatalf("kills = %d, want %d", got, cfg.Kills)
	}
	for _, k := range rep.Kills {
		if k.NewLeader == "" || k.NewLeader == k.Killed {
			t.Errorf("kill %d: new leader %q after killing %q", k.Kill, k.NewLeader, k.Killed)
		}
		// Writes answered while the killed node was dying may end after the SIGKILL was sent,
		// so unavailable can be a little under kill->write; both must be positive.
		if k.KillToWriteMs <= 0 || k.UnavailableMs <= 0 {
			t.Errorf("kill %d: kill->write %vms, unavailable %vms; want both > 0", k.Kill, k.KillToWriteMs, k.UnavailableMs)
		}
	}
	if rep.Unavailable.Worst < rep.Unavailable.Median {
		t.Errorf("worst %v < median %v", rep.Unavailable.Worst, rep.Unavailable.Median)
	}
	if rep.Load.Ops[0].Count == 0 {
		t.Error("no successful writes recorded")
	}
	if got := strings.Count(progress.String(), "\n"); got != cfg.Kills {
		t.Errorf("progress lines = %d, want %d:\n%s", got, cfg.Kills, progress.String())
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	for id, n := range fc.nodes {
		if n.alive {
			t.Errorf("node %s still running after failover returned", id)
		}
	}
	var sb strings.Builder
	if err := rep.WriteTable(&sb); err != nil || !strings.Contains(sb.String(), "median") {
		t.Errorf("WriteTable: %v\n%s", err, sb.String())
	}
}

func TestFailoverStopsOnCancel(t *testing.T) {
	fc := newFakeCluster()
	cfg := DefaultFailoverConfig()
	cfg.Spawn = fakeSpawn(t)
	cfg.Settle = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Cancel once the cluster is up and loaded.
		for {
			fc.mu.Lock()
			n := len(fc.nodes)
			fc.mu.Unlock()
			if n == 3 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	_, err := failover(ctx, cfg, fc.starter(t))
	if err == nil {
		t.Fatal("failover returned nil after cancel")
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	for id, n := range fc.nodes {
		if n.alive {
			t.Errorf("node %s still running after cancel", id)
		}
	}
}

func TestCatchupFake(t *testing.T) {
	fc := newFakeCluster()
	cfg := DefaultCatchupConfig()
	cfg.Spawn = fakeSpawn(t)
	cfg.Writes = 300
	cfg.Clients = 4
	rep, err := catchup(context.Background(), cfg, fc.starter(t))
	if err != nil {
		t.Fatalf("catchup: %v", err)
	}
	if rep.Follower == "" || rep.Follower == fc.order[0] && fc.leader == fc.order[0] {
		t.Errorf("follower = %q", rep.Follower)
	}
	if got := rep.Load.Ops[0].Count; got != int64(cfg.Writes) {
		t.Errorf("writes = %d, want %d", got, cfg.Writes)
	}
	// Three nodes were registered, then 300 writes: the leader's index is 300.
	if rep.TargetIndex != 300 {
		t.Errorf("target index = %d, want 300", rep.TargetIndex)
	}
	b, err := json.Marshal(rep)
	if err != nil || !bytes.Contains(b, []byte(`"catchup_ms"`)) {
		t.Errorf("json: %v %s", err, b)
	}
}

func TestServerArgs(t *testing.T) {
	c := &spawnedCluster{cfg: SpawnConfig{StabilizationTime: time.Second, ExtraArgs: []string{"--x"}}}
	n := &spawnedNode{ID: "n2", HTTPAddr: "127.0.0.1:2", RaftAddr: "127.0.0.1:3", DataDir: "/d/n2"}
	tests := []struct {
		join string
		want string
	}{
		{"", "server --id n2 --data-dir /d/n2 --http-addr 127.0.0.1:2 --raft-addr 127.0.0.1:3 --bootstrap --server-stabilization-time 1s --x"},
		{"127.0.0.1:1", "server --id n2 --data-dir /d/n2 --http-addr 127.0.0.1:2 --raft-addr 127.0.0.1:3 --join 127.0.0.1:1 --server-stabilization-time 1s --x"},
	}
	for _, tt := range tests {
		if got := strings.Join(c.args(n, tt.join), " "); got != tt.want {
			t.Errorf("args(join=%q) = %q, want %q", tt.join, got, tt.want)
		}
	}
}

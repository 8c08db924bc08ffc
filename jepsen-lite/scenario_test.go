package jepsenlite

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The scenario tests build raftkv once per test binary and run the harness
// against real processes for about a minute each. They are skipped with
// -short. Scenarios with Net "netns" need root (network namespaces) and
// skip, saying so, without it; the "proxy" ones run anywhere.

var (
	buildMu  sync.Mutex
	binCache = map[string]string{} // tags -> path
	binDir   string
)

// raftkvBinary builds ./cmd/raftkv with tags (once per tag set).
func raftkvBinary(t *testing.T, tags string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := binCache[tags]; ok {
		return p
	}
	if binDir == "" {
		d, err := os.MkdirTemp("", "jepsen-lite-bin-")
		if err != nil {
			t.Fatal(err)
		}
		binDir = d
	}
	out := filepath.Join(binDir, "raftkv-"+strings.ReplaceAll(tags, " ", "-"))
	cmd := exec.Command("go", "build", "-tags", tags, "-o", out, "../cmd/raftkv")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build raftkv (-tags %q): %v\n%s", tags, err, b)
	}
	binCache[tags] = out
	return out
}

// scenario runs the harness with cfg adjusted for CI and returns the result;
// the report is logged, and the run dir is kept only when the test fails.
func scenario(t *testing.T, tags string, mutate func(*Config)) Result {
	t.Helper()
	if testing.Short() {
		t.Skip("scenario test: skipped with -short")
	}
	cfg := DefaultConfig()
	cfg.Binary = raftkvBinary(t, tags)
	cfg.TimeLimit = 40 * time.Second
	cfg.FaultMin, cfg.FaultMax, cfg.Heal = 4*time.Second, 7*time.Second, 4*time.Second
	cfg.CheckTimeout = 30 * time.Second
	cfg.Seed = uint64(time.Now().UnixNano() % 100000)
	if s := os.Getenv("JEPSEN_LITE_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("JEPSEN_LITE_SEED: %v", err)
		}
		cfg.Seed = n
	}
	mutate(&cfg)
	if cfg.Net == "netns" {
		needNetns(t)
	}
	dir, err := os.MkdirTemp("", "jepsen-lite-"+strings.ReplaceAll(t.Name(), "/", "-")+"-")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Dir = dir
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("run dir kept: %s", dir)
		} else {
			os.RemoveAll(dir)
		}
	})
	var out bytes.Buffer
	cfg.Out = &out
	cfg.Logger = testLogger(t)
	cfg.Replay = "JEPSEN_LITE_SEED=" + strconv.FormatUint(cfg.Seed, 10) + " go test -run '^" + t.Name() + "$' ./jepsen-lite"
	t.Logf("seed %d (replay: %s)", cfg.Seed, cfg.Replay)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.TimeLimit+3*time.Minute)
	defer cancel()
	res, err := Run(ctx, cfg)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatalf("harness error: %v", err)
	}
	return res
}

func containsFault(fs []string, f string) bool {
	for _, x := range fs {
		if x == f {
			return true
		}
	}
	return false
}

func wantVerdict(t *testing.T, res Result, want Verdict) {
	t.Helper()
	if res.Verdict != want {
		t.Errorf("verdict = %s, want %s", res.Verdict, want)
	}
	if res.Ops < 500 {
		t.Errorf("only %d ops recorded; the workload barely ran", res.Ops)
	}
}

func TestScenarioKill(t *testing.T) {
	res := scenario(t, "hashicorpmetrics", func(c *Config) { c.Faults = []string{FaultKill, FaultKillAll} })
	wantVerdict(t, res, Valid)
}

func TestScenarioPause(t *testing.T) {
	res := scenario(t, "hashicorpmetrics", func(c *Config) { c.Faults = []string{FaultPause} })
	wantVerdict(t, res, Valid)
}

func TestScenarioPartition(t *testing.T) {
	res := scenario(t, "hashicorpmetrics", func(c *Config) { c.Faults = []string{FaultPartition}; c.Workload = "set"; c.Net = "netns" })
	wantVerdict(t, res, Valid)
}

// TestScenarioPartitionProxy runs the partition scenario in the portable
// mode (every node-to-node link through a harness proxy), also as root.
func TestScenarioPartitionProxy(t *testing.T) {
	res := scenario(t, "hashicorpmetrics", func(c *Config) { c.Faults = []string{FaultPartition}; c.Workload = "set"; c.Net = "proxy" })
	wantVerdict(t, res, Valid)
	// The partitions were really injected, through the proxies.
	b, err := os.ReadFile(filepath.Join(res.Dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rj struct {
		Flags  map[string]any `json:"flags"`
		Faults map[string]int `json:"faults"`
	}
	if err := json.Unmarshal(b, &rj); err != nil {
		t.Fatal(err)
	}
	if rj.Flags["net"] != "proxy" || rj.Faults[FaultPartition] == 0 {
		t.Errorf("net %v, %d partitions injected; want proxy and at least one", rj.Flags["net"], rj.Faults[FaultPartition])
	}
}

func TestScenarioMembership(t *testing.T) {
	res := scenario(t, "hashicorpmetrics", func(c *Config) { c.Faults = []string{FaultMembership} })
	wantVerdict(t, res, Valid)
}

// TestScenarioUnsafeIsCaught proves the harness can fail: the jepsenunsafe
// build serves default reads locally without confirming leadership, so
// isolating the leader while the majority keeps writing must produce reads
// the checker rejects.
func TestScenarioUnsafeIsCaught(t *testing.T) {
	res := scenario(t, "hashicorpmetrics jepsenunsafe", func(c *Config) {
		c.Faults = []string{FaultPartition}
		c.Partitions = []string{"isolate-leader"}
		c.Net = "netns"
		c.TimeLimit = 30 * time.Second
		c.FaultMin, c.FaultMax, c.Heal = 6*time.Second, 8*time.Second, 3*time.Second
	})
	wantVerdict(t, res, Invalid)
}

package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testConfig is a small, quick load against nodes: a fixed request count, so no test depends
// on timing.
func testConfig(nodes []string) Config {
	cfg := DefaultConfig()
	cfg.Nodes = nodes
	cfg.Clients = []int{4}
	cfg.Total = 200
	cfg.Keys = 50
	cfg.Baselines = false
	cfg.Seed = 1
	return cfg
}

func TestRunWorkloads(t *testing.T) {
	fc := newFakeCluster()
	nodes := fc.start3(t)
	tests := []struct {
		workload, target, consistency string
		wantOps                       []string
	}{
		{WorkloadPut, TargetLeader, ConsistencyDefault, []string{OpWrite}},
		{WorkloadPut, TargetFollowers, ConsistencyDefault, []string{OpWrite}},
		{WorkloadGet, TargetAll, ConsistencyDefault, []string{OpRead}},
		{WorkloadGet, TargetFollowers, ConsistencyStale, []string{OpRead}},
		{WorkloadMixed, TargetLeader, ConsistencyConsistent, []string{OpRead, OpWrite}},
		{WorkloadCAS, TargetLeader, ConsistencyDefault, []string{OpCAS, OpRead}},
	}
	for _, tt := range tests {
		t.Run(tt.workload+"/"+tt.target+"/"+tt.consistency, func(t *testing.T) {
			cfg := testConfig(nodes)
			cfg.Workload, cfg.Target, cfg.Consistency = tt.workload, tt.target, tt.consistency
			leaderBefore := fc.nodes["n1"].kvReq.Load()
			rep, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if got := len(rep.Runs); got != 1 {
				t.Fatalf("runs = %d, want 1", got)
			}
			run := rep.Runs[0]
			var gotOps []string
			var cas, total int64
			for _, op := range run.Ops {
				gotOps = append(gotOps, op.Op)
				total += op.Count
				if op.Op == OpCAS {
					cas = op.Count
				}
			}
			if fmt.Sprint(gotOps) != fmt.Sprint(slices.Sorted(slices.Values(tt.wantOps))) {
				t.Errorf("ops = %v, want %v", gotOps, slices.Sorted(slices.Values(tt.wantOps)))
			}
			if run.Errors != 0 {
				t.Errorf("errors = %d, want 0: %+v", run.Errors, run.Ops)
			}
			want := cfg.Total
			if tt.workload == WorkloadCAS {
				total = cas // the CAS reads that learn an index are extra requests
			}
			if total != want {
				t.Errorf("successful requests = %d, want %d", total, want)
			}
			if tt.target == TargetFollowers && fc.nodes["n1"].kvReq.Load() != leaderBefore {
				t.Errorf("leader served %d KV requests with target followers, want 0", fc.nodes["n1"].kvReq.Load()-leaderBefore)
			}
		})
	}
}

func TestRunCountsErrorsByKind(t *testing.T) {
	fc, addr := newFakeServer(t)
	fc.failEvery = 10
	cfg := testConfig([]string{addr})
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	op := rep.Runs[0].Ops[0]
	if got, want := op.Errors["http 503 failed"], int64(20); got != want {
		t.Errorf(`errors["http 503 failed"] = %d, want %d (all: %v)`, got, want, op.Errors)
	}
	if got, want := op.Count, int64(180); got != want {
		t.Errorf("successes = %d, want %d", got, want)
	}
}

func TestRunWithoutPrefillCountsMisses(t *testing.T) {
	_, addr := newFakeServer(t)
	cfg := testConfig([]string{addr})
	cfg.Workload, cfg.Prefill = WorkloadGet, false
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	op := rep.Runs[0].Ops[0]
	if op.Misses != cfg.Total || len(op.Errors) != 0 {
		t.Errorf("misses = %d, errors = %v; want %d misses and no errors", op.Misses, op.Errors, cfg.Total)
	}
}

func TestRunClientSweepAndBaselines(t *testing.T) {
	_, addr := newFakeServer(t)
	cfg := testConfig([]string{addr})
	cfg.Clients = []int{1, 3}
	cfg.Baselines = true
	cfg.BaselineDuration = 50 * time.Millisecond
	cfg.DataDir = t.TempDir()
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := len(rep.Runs); got != 2 {
		t.Fatalf("runs = %d, want 2", got)
	}
	b := rep.Baselines
	if b == nil || b.Fsync == nil || b.Fsync.Ops == 0 {
		t.Fatalf("fsync baseline missing: %+v", b)
	}
	if got := len(b.HTTP); got != 2 {
		t.Fatalf("http baselines = %d, want 2 (1 and 3 clients)", got)
	}
	for _, run := range rep.Runs {
		rt := run.Ops[0].Ratios
		if rt == nil || rt.PerFsync <= 0 || rt.PerSecOfHTTP <= 0 || rt.P50OverFloor <= 0 {
			t.Errorf("c=%d: ratios %+v, want all positive", run.Clients, rt)
		}
	}
	var sb strings.Builder
	if err := rep.WriteTable(&sb); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"fsync 4096B+fdatasync", "loopback http put", "p50/floor"} {
		if !strings.Contains(sb.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, sb.String())
		}
	}
}

func TestRunNoLeader(t *testing.T) {
	fc, addr := newFakeServer(t)
	fc.mu.Lock()
	fc.leader = ""
	fc.mu.Unlock()
	_, err := Run(context.Background(), testConfig([]string{addr}))
	if err == nil || !strings.Contains(err.Error(), "no leader") {
		t.Errorf("Run with no leader: err = %v, want no leader", err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string // substring of the error, "" for none
	}{
		{"default", func(*Config) {}, ""},
		{"bad workload", func(c *Config) { c.Workload = "scan" }, "unknown workload"},
		{"zero clients", func(c *Config) { c.Clients = []int{16, 0} }, "clients 0"},
		{"no duration", func(c *Config) { c.Duration = 0 }, "duration or total"},
		{"total without duration", func(c *Config) { c.Duration, c.Total = 0, 10 }, ""},
		{"key too short", func(c *Config) { c.Keys, c.KeySize = 1000, 3 }, "key size 3"},
		{"key just fits", func(c *Config) { c.Keys, c.KeySize = 1000, 4 }, ""},
		{"value too big", func(c *Config) { c.ValueSize = MaxValueSize + 1 }, "value size"},
		{"read ratio", func(c *Config) { c.ReadRatio = 1.5 }, "read ratio"},
		{"consistency", func(c *Config) { c.Consistency = "weak" }, "unknown consistency"},
		{"target", func(c *Config) { c.Target = "some" }, "unknown target"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mutate(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestKeyName(t *testing.T) {
	tests := []struct {
		i, size int
		want    string
	}{
		{0, 16, "k000000000000000"},
		{42, 16, "k000000000000042"},
		{99999, 6, "k99999"},
		{7, 2, "k7"},
	}
	for _, tt := range tests {
		if got := string(keyName(nil, tt.i, tt.size)); got != tt.want {
			t.Errorf("keyName(%d, %d) = %q, want %q", tt.i, tt.size, got, tt.want)
		}
	}
}

func TestErrorKind(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{&httpError{Status: 503, Outcome: "failed"}, "http 503 failed"},
		{fmt.Errorf("put: %w", &httpError{Status: 500}), "http 500"},
		{errMissing, KindMissing},
		{context.DeadlineExceeded, KindTimeout},
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), KindConnRefused},
		{io.ErrUnexpectedEOF, KindConnReset},
		{errors.New("weird"), KindTransport},
	}
	for _, tt := range tests {
		if got := errorKind(tt.err); got != tt.want {
			t.Errorf("errorKind(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestReadQuery(t *testing.T) {
	for mode, want := range map[string]string{
		ConsistencyDefault: "?raw", ConsistencyStale: "?raw&stale", ConsistencyConsistent: "?raw&consistent",
	} {
		if got := readQuery(mode); got != want {
			t.Errorf("readQuery(%q) = %q, want %q", mode, got, want)
		}
	}
}

func TestRunConnections(t *testing.T) {
	tests := []struct {
		clients, conns int
		wantMax        int64 // most connections open at once, at most
	}{
		{clients: 8, conns: 2, wantMax: 2},
		{clients: 3, conns: 1, wantMax: 1},
		// With no cap net/http may dial a spare connection while another frees up, so the
		// uncapped case has no exact bound to test.
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("c%d/conns%d", tt.clients, tt.conns), func(t *testing.T) {
			fc, addr := newFakeServer(t)
			cfg := testConfig([]string{addr})
			cfg.Clients, cfg.Conns = []int{tt.clients}, tt.conns
			if _, err := Run(context.Background(), cfg); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if got := fc.node("n1").maxConns.Load(); got > tt.wantMax {
				t.Errorf("most connections at once = %d, want at most %d", got, tt.wantMax)
			}
		})
	}
}

// Against nodes that serve HTTPS and want an ACL token, the load commands connect with the CA
// and send the token on every KV request; without the token every request is refused.
func TestRunOverTLSWithToken(t *testing.T) {
	fc := newFakeCluster()
	fc.token = "s3cret"
	srv := httptest.NewUnstartedServer(nil)
	srv.StartTLS() // only for its certificate, valid for 127.0.0.1
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := fc.startNode(t, "n1", tls.NewListener(ln, &tls.Config{Certificates: srv.TLS.Certificates}))
	t.Cleanup(func() { fc.kill(n) })

	cfg := testConfig([]string{n.addr}) // no scheme: TLS makes it https
	cfg.TLS = &tls.Config{RootCAs: pool}
	cfg.Token = "s3cret"
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run over TLS: %v", err)
	}
	if op := rep.Runs[0].Ops[0]; op.Count != 200 || len(op.Errors) != 0 {
		t.Fatalf("over TLS with the token: %d ok, errors %v; want 200 ok", op.Count, op.Errors)
	}

	cfg.Token = ""
	rep, err = Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run without token: %v", err)
	}
	if op := rep.Runs[0].Ops[0]; op.Count != 0 || op.Errors["http 403"] == 0 {
		t.Fatalf("without the token: %d ok, errors %v; want every request refused with 403", op.Count, op.Errors)
	}
}

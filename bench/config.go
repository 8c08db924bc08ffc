package bench

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"time"
)

// Workloads.
const (
	WorkloadPut   = "put"   // PUT /v1/kv/<key> of a fresh value
	WorkloadGet   = "get"   // GET /v1/kv/<key>?raw at Config.Consistency
	WorkloadMixed = "mixed" // reads with probability Config.ReadRatio, puts otherwise
	WorkloadCAS   = "cas"   // PUT /v1/kv/<key>?cas=<last ModifyIndex this client saw>
)

// Read consistency modes (the query parameter added to reads).
const (
	ConsistencyDefault    = "default"    // no parameter: linearizable
	ConsistencyConsistent = "consistent" // ?consistent: linearizable, Consul spelling
	ConsistencyStale      = "stale"      // ?stale: local state machine of the node asked
)

// Targets: which nodes the clients send requests to.
const (
	TargetLeader    = "leader"    // the node every status endpoint names as leader
	TargetFollowers = "followers" // every listed node except the leader
	TargetAll       = "all"       // every listed node
)

// DefaultNodes are the HTTP addresses of `make run`'s three-node cluster.
var DefaultNodes = []string{"127.0.0.1:8501", "127.0.0.1:8502", "127.0.0.1:8503"}

// MaxValueSize is the largest value the server accepts (docs/api.md).
const MaxValueSize = 512 << 10

// Config describes one load run: a workload at one or more client counts, plus the baselines.
type Config struct {
	// Nodes are the HTTP addresses (host:port, or a URL) of the nodes to load. Default DefaultNodes.
	Nodes []string
	// Workload is one of WorkloadPut, WorkloadGet, WorkloadMixed, WorkloadCAS. Default put.
	Workload string
	// Clients lists the client counts to run, one measurement each, in order. Default [16].
	Clients []int
	// Conns caps the TCP connections per node (http.Transport.MaxConnsPerHost); clients beyond it
	// wait for a free connection. 0 (default) means no cap: in practice one kept-alive
	// connection per client (net/http may dial a spare when a request finds none idle).
	Conns int
	// Duration is how long each measurement lasts when Total is 0. Default 10s.
	Duration time.Duration
	// Total, when > 0, ends each measurement after that many requests instead of after Duration.
	Total int64
	// Warmup runs the workload unmeasured for this long before each measurement. Default 0.
	Warmup time.Duration
	// Keys is the size of the key space; each request picks a key uniformly. Default 10000.
	Keys int
	// KeySize is the length of every key in bytes. Default 16.
	KeySize int
	// ValueSize is the length of every written value in bytes. Default 100.
	ValueSize int
	// ReadRatio is the fraction of reads in the mixed workload, in [0,1]. Default 0.9.
	ReadRatio float64
	// Consistency is the read mode: ConsistencyDefault, ConsistencyConsistent or ConsistencyStale.
	Consistency string
	// Target is TargetLeader, TargetFollowers or TargetAll. Default leader.
	Target string
	// Prefill writes every key of the key space once before a workload that reads (get, mixed,
	// cas), so reads hit existing keys. Default true.
	Prefill bool
	// Timeout bounds one request. Default 10s.
	Timeout time.Duration
	// ErrorBackoff is how long a client waits after a failed request before its next one, so
	// that during an election clients do not spin on instant 503s and starve the nodes of CPU.
	// Default 10ms; 0 retries at once.
	ErrorBackoff time.Duration
	// Seed seeds key choice; client i uses Seed+i. 0 picks one from the clock (it is reported).
	Seed uint64

	// Baselines turns on the fsync and loopback HTTP baselines. Default true.
	Baselines bool
	// TLS, when set, makes the tool talk HTTPS to Nodes with this client configuration (CA,
	// client certificate); addresses without a scheme get https://. Spawned clusters are plain.
	TLS *tls.Config
	// Token is sent as X-Consul-Token on every KV request, for clusters with ACLs on.
	Token string
	// BaselineDuration is how long one round of a baseline runs. Default 1s.
	BaselineDuration time.Duration
	// BaselineRounds is how many rounds each baseline runs; the best round is reported, since a
	// floor is a best case and on a shared machine a single round can land on someone else's
	// burst. Every round's rate is reported too, so the noise shows. Default 3.
	BaselineRounds int
	// DataDir is where the fsync baseline writes its temporary file; it should be on the
	// filesystem that holds the nodes' data. Default os.TempDir().
	DataDir string

	// Progress receives a live progress line every second; nil disables it.
	Progress io.Writer
	// Logger receives diagnostics. Default discards.
	Logger *slog.Logger

	// nodeCPU, when set, reads the nodes' CPU time so far by node ID (spawned clusters only).
	nodeCPU func() map[string]time.Duration
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{
		Nodes:            slices.Clone(DefaultNodes),
		Workload:         WorkloadPut,
		Clients:          []int{16},
		Duration:         10 * time.Second,
		Keys:             10000,
		KeySize:          16,
		ValueSize:        100,
		ReadRatio:        0.9,
		Consistency:      ConsistencyDefault,
		Target:           TargetLeader,
		Prefill:          true,
		Timeout:          10 * time.Second,
		ErrorBackoff:     10 * time.Millisecond,
		Baselines:        true,
		BaselineDuration: time.Second,
		BaselineRounds:   3,
		DataDir:          os.TempDir(),
	}
}

// Validate reports the first problem with c, if any.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Nodes) == 0 {
		errs = append(errs, errors.New("no nodes"))
	}
	switch c.Workload {
	case WorkloadPut, WorkloadGet, WorkloadMixed, WorkloadCAS:
	default:
		errs = append(errs, fmt.Errorf("unknown workload %q (want put, get, mixed or cas)", c.Workload))
	}
	if len(c.Clients) == 0 {
		errs = append(errs, errors.New("no client counts"))
	}
	for _, n := range c.Clients {
		if n < 1 {
			errs = append(errs, fmt.Errorf("clients %d: must be at least 1", n))
		}
	}
	if c.Conns < 0 {
		errs = append(errs, fmt.Errorf("conns %d: must not be negative", c.Conns))
	}
	if c.Total < 0 {
		errs = append(errs, fmt.Errorf("total %d: must not be negative", c.Total))
	}
	if c.Total == 0 && c.Duration <= 0 {
		errs = append(errs, errors.New("need a positive duration or total"))
	}
	if c.Keys < 1 {
		errs = append(errs, fmt.Errorf("keys %d: must be at least 1", c.Keys))
	}
	// Keys are a one-letter prefix and a zero-padded decimal index: the index must fit.
	if need := len(strconv.Itoa(max(c.Keys-1, 0))) + 1; c.KeySize < need || c.KeySize > 1024 {
		errs = append(errs, fmt.Errorf("key size %d: must be in [%d, 1024] for %d keys", c.KeySize, need, c.Keys))
	}
	if c.ValueSize < 0 || c.ValueSize > MaxValueSize {
		errs = append(errs, fmt.Errorf("value size %d: must be in [0, %d]", c.ValueSize, MaxValueSize))
	}
	if c.ReadRatio < 0 || c.ReadRatio > 1 {
		errs = append(errs, fmt.Errorf("read ratio %g: must be in [0, 1]", c.ReadRatio))
	}
	switch c.Consistency {
	case ConsistencyDefault, ConsistencyConsistent, ConsistencyStale:
	default:
		errs = append(errs, fmt.Errorf("unknown consistency %q (want default, consistent or stale)", c.Consistency))
	}
	switch c.Target {
	case TargetLeader, TargetFollowers, TargetAll:
	default:
		errs = append(errs, fmt.Errorf("unknown target %q (want leader, followers or all)", c.Target))
	}
	if c.Timeout <= 0 {
		errs = append(errs, errors.New("timeout must be positive"))
	}
	if c.ErrorBackoff < 0 {
		errs = append(errs, errors.New("error backoff must not be negative"))
	}
	if c.Baselines && (c.BaselineDuration <= 0 || c.BaselineRounds < 1) {
		errs = append(errs, errors.New("baseline duration and rounds must be positive"))
	}
	return errors.Join(errs...)
}

func (c *Config) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

// readQuery is the query string of a read at consistency mode.
func readQuery(mode string) string {
	switch mode {
	case ConsistencyStale:
		return "?raw&stale"
	case ConsistencyConsistent:
		return "?raw&consistent"
	default:
		return "?raw"
	}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/httpapi"
	"github.com/raftkv/raftkv/httpapi/wire"
)

type serverFlags struct {
	configFile    string
	cluster       cluster.Config
	httpAddr      string
	httpAdvertise string
	join          []string
	rejoinAfter   time.Duration
	dialOverride  map[string]string
	logLevel      string
	logFormat     string
	tls           tlsFlags
	aclFile       string
	pprof         bool
}

func newServerCmd() *cobra.Command {
	sf := &serverFlags{cluster: cluster.DefaultConfig()}
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a raftkv node",
		Long: `Run a raftkv node. Every flag can also be set as RAFTKV_<FLAG> in the environment
(for example RAFTKV_DATA_DIR), and in a TOML file given with --config under the flag's
name (data-dir = "/var/lib/raftkv", join = ["10.0.0.1:8501"], heartbeat-timeout = "200ms").
A flag on the command line wins over the environment, which wins over the file.

Start the first node of a new cluster with --bootstrap on an empty data dir, and the
others with --join pointing at any running node. A restarted node keeps its data dir
and rejoins by itself.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if sf.configFile != "" {
				if err := applyConfigFile(cmd.Flags(), sf.configFile); err != nil {
					return err
				}
			}
			return runServer(cmd.Context(), sf, cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&sf.configFile, "config", "", "TOML config file: any flag below by name (data-dir = \"/var/lib/raftkv\"); command line and RAFTKV_* environment win over it")
	c := &sf.cluster
	f.StringVar(&c.ID, "id", "", "unique node ID (required)")
	f.StringVar(&c.DataDir, "data-dir", "", "data directory (required)")
	f.StringVar(&sf.httpAddr, "http-addr", "127.0.0.1:8501", "HTTP API listen address")
	f.StringVar(&sf.httpAdvertise, "http-advertise", "", "HTTP address other nodes use to reach this one (default --http-addr)")
	f.StringVar(&c.RaftAddr, "raft-addr", "127.0.0.1:8301", "Raft listen address")
	f.StringVar(&c.RaftAdvertise, "raft-advertise", "", "Raft address peers dial (default --raft-addr)")
	f.BoolVar(&c.Bootstrap, "bootstrap", false, "form a new cluster with this node as its only voter (empty data dir only)")
	f.StringSliceVar(&sf.join, "join", nil, "HTTP addresses of existing nodes to ask to add this one (comma-separated)")
	f.DurationVar(&c.HeartbeatTimeout, "heartbeat-timeout", c.HeartbeatTimeout, "follower heartbeat timeout before an election")
	f.DurationVar(&c.ElectionTimeout, "election-timeout", c.ElectionTimeout, "candidate election timeout")
	f.DurationVar(&c.LeaderLeaseTimeout, "leader-lease-timeout", c.LeaderLeaseTimeout, "leader steps down without quorum contact for this long")
	f.DurationVar(&c.CommitTimeout, "commit-timeout", c.CommitTimeout, "max wait before an idle AppendEntries")
	f.DurationVar(&c.ApplyTimeout, "apply-timeout", c.ApplyTimeout, "a write not committed within this long reports outcome unknown")
	f.Uint64Var(&c.SnapshotThreshold, "snapshot-threshold", c.SnapshotThreshold, "log entries between snapshots")
	f.DurationVar(&c.SnapshotInterval, "snapshot-interval", c.SnapshotInterval, "how often to check the snapshot threshold")
	f.Uint64Var(&c.TrailingLogs, "trailing-logs", c.TrailingLogs, "log entries kept after a snapshot")
	f.IntVar(&c.MaxAppendEntries, "max-append-entries", c.MaxAppendEntries, "entries per AppendEntries RPC / group commit")
	f.IntVar(&c.WriteBatchInflight, "write-batch-inflight", c.WriteBatchInflight, "coalesced write batches the leader keeps in flight (concurrent single-key writes share one Raft entry); 0 = every write is its own entry")
	f.DurationVar(&c.FSMCommitInterval, "fsm-commit-interval", c.FSMCommitInterval, "longest applied writes wait in the state machine's open bbolt transaction before it is committed (fsync) when nothing reads them sooner; writes are acknowledged once in a quorum's Raft log and applied, every read sees them, watches may wake up to this late; 0 = commit every batch before acknowledging")
	f.DurationVar(&c.ServerStabilizationTime, "server-stabilization-time", c.ServerStabilizationTime, "a new server must be healthy this long before it becomes a voter")
	f.DurationVar(&c.DeadNodeTimeout, "dead-node-timeout", 0, "remove a voter unhealthy for longer than this (0 = never)")
	f.StringToStringVar(&sf.dialOverride, "dial-override", nil, "FROM=TO,...: dial TO whenever this node would dial peer address FROM (Raft or HTTP); for fault-injection proxies")
	f.DurationVar(&sf.rejoinAfter, "rejoin-after", 5*time.Second, "with no leader contact for this long, check membership and ask to be re-added if removed")
	f.DurationVar(&c.HealthContactThreshold, "health-contact-threshold", c.HealthContactThreshold, "a server with no leader contact for longer is unhealthy")
	f.Uint64Var(&c.HealthMaxLag, "health-max-lag", c.HealthMaxLag, "a server more entries behind the leader is unhealthy")
	f.DurationVar(&c.HealthInterval, "health-interval", c.HealthInterval, "how often the leader refreshes every server's health")
	f.UintVar(&c.MinQuorum, "min-quorum", 0, "dead-node cleanup never shrinks the voters below this")
	f.DurationVar(&c.DiskStallTimeout, "disk-stall-timeout", c.DiskStallTimeout, "a leader whose writes do not commit for this long (followers reachable) steps down; 0 = off")
	f.Var(&c.MinFreeDisk, "min-free-disk", "refuse writes (HTTP 507; reads go on) while the data dir's filesystem has less free space than this (KB, MB, GB); 0 = off")
	f.StringVar(&sf.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.StringVar(&sf.logFormat, "log-format", "text", "log format: text or json")
	addServerTLSFlags(f, &sf.tls)
	f.BoolVar(&sf.pprof, "enable-pprof", false, "serve Go profiles (CPU, heap, allocs, block, mutex, goroutine, trace) at /debug/pprof/ and turn on block and mutex sampling; needs the management token when ACLs are on")
	f.StringVar(&sf.aclFile, "acl-file", "", "TOML file of ACL tokens and their key-prefix rules; requests then need a token (X-Consul-Token). Every node should load the same file; reloaded on SIGHUP")
	return cmd
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError{fmt.Errorf("invalid --log-level %q: want debug, info, warn or error", level)}
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, usageError{fmt.Errorf("invalid --log-format %q: want text or json", format)}
	}
}

func runServer(ctx context.Context, sf *serverFlags, stderr io.Writer) error {
	log, err := newLogger(stderr, sf.logLevel, sf.logFormat)
	if err != nil {
		return err
	}
	// Files reread on SIGHUP (certificates, ACL rules) register a reloader
	// here before the SIGHUP loop starts; a failed reload keeps the previous
	// contents and logs why.
	var reloads []reloader
	cfg := sf.cluster
	if sf.httpAdvertise == "" {
		sf.httpAdvertise = sf.httpAddr
	}
	cfg.HTTPAddr = sf.httpAdvertise
	cfg.Logger = log
	cfg.DialOverride = sf.dialOverride
	srvTLS, err := setupServerTLS(sf.tls, &cfg, &reloads, log)
	if err != nil {
		return err
	}
	peers := newPeers(sf.dialOverride, srvTLS.peerTLS())
	acl, err := setupACL(sf, srvTLS.enabled(), &reloads, peers, log)
	if err != nil {
		return err
	}
	cfg.FetchStats = peers.statsFetcher()
	fatal := make(chan error, 1)
	cfg.OnFatal = func(err error) {
		select {
		case fatal <- err:
		default:
		}
	}
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	if cfg.Bootstrap && len(sf.join) > 0 {
		return usageError{errors.New("--bootstrap and --join are exclusive: bootstrap the first node, join the others")}
	}

	reg, err := newMetricsRegistry()
	if err != nil {
		return err
	}

	// Listen before starting Raft so a busy port fails fast and cleanly.
	ln, err := net.Listen("tcp", sf.httpAddr)
	if err != nil {
		return fmt.Errorf("listen for http on %s: %w", sf.httpAddr, err)
	}
	node, err := cluster.Open(cfg)
	if err != nil {
		ln.Close()
		return fmt.Errorf("start node: %w", err)
	}
	if sf.pprof {
		// Sample one blocking event per 10µs spent blocked and 1 in 100 contended locks: cheap enough
		// to leave on while profiling under load.
		runtime.SetBlockProfileRate(10_000)
		runtime.SetMutexProfileFraction(100)
	}
	api := httpapi.New(httpapi.Config{Node: node, Logger: log, Registry: reg, PeerTransport: peers.transport, PeerTLS: srvTLS.enabled(), ACL: acl, Pprof: sf.pprof})
	srv := &http.Server{
		Handler:           api,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      11 * time.Minute, // blocking queries wait up to 10m
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	hupCtx, stopHUP := context.WithCancel(ctx)
	hupDone := make(chan struct{})
	go func() { defer close(hupDone); reloadOnHUP(hupCtx, log, reloads) }() // stopped by stopHUP

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(srvTLS.listener(ln)) }() // stopped by srv.Shutdown below
	log.Info("raftkv node started", "id", cfg.ID, "http_addr", ln.Addr().String(), "raft_addr", cfg.RaftAddr, "data_dir", cfg.DataDir)

	joinCtx, stopJoin := context.WithCancel(ctx)
	joinDone := make(chan struct{})
	go func() { // stopped by stopJoin
		defer close(joinDone)
		req := wire.JoinRequest{ID: cfg.ID, RaftAddr: node.RaftAddr(), HTTPAddr: sf.httpAdvertise, Fresh: node.Fresh()}
		if len(sf.join) > 0 {
			peers.joinLoop(joinCtx, log, sf.join, req)
		}
		peers.rejoinWatchdog(joinCtx, log, node, sf.join, req, sf.rejoinAfter)
	}()

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-serveErr:
		runErr = fmt.Errorf("http server: %w", err)
	case err := <-fatal:
		log.Error("node failed; exiting so a supervisor can restart it", "error", err)
		runErr = err
	}
	stopJoin()
	<-joinDone
	stopHUP()
	<-hupDone

	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Hand over leadership while the API still answers, then stop serving.
	if err := node.Close(shutCtx); err != nil {
		runErr = errors.Join(runErr, err)
	}
	if err := srv.Shutdown(shutCtx); err != nil {
		runErr = errors.Join(runErr, fmt.Errorf("http shutdown: %w", err))
	}
	api.Close()
	log.Info("stopped")
	return runErr
}

// joinLoop asks the listed nodes, in turn, to add this one, until one says
// yes or ctx ends. Any node will do: a follower forwards to the leader.
func (p *peers) joinLoop(ctx context.Context, log *slog.Logger, addrs []string, req wire.JoinRequest) {
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		for _, addr := range addrs {
			addr = strings.TrimSpace(addr)
			if addr == "" || addr == req.HTTPAddr {
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := p.client(addr, 10*time.Second).Join(cctx, req)
			cancel()
			if err == nil {
				log.Info("joined the cluster", "via", addr, "attempt", attempt)
				return
			}
			log.Warn("join attempt failed", "via", addr, "attempt", attempt, "error", err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// reloader rereads one file the server depends on.
type reloader struct {
	name string
	fn   func() error
}

// reloadOnHUP runs every reloader on each SIGHUP until ctx ends.
func reloadOnHUP(ctx context.Context, log *slog.Logger, reloads []reloader) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if len(reloads) == 0 {
				log.Info("SIGHUP: nothing to reload")
			}
			for _, r := range reloads {
				if err := r.fn(); err != nil {
					log.Error("SIGHUP: reload failed; keeping the previous version", "what", r.name, "error", err)
					continue
				}
				log.Info("SIGHUP: reloaded", "what", r.name)
			}
		}
	}
}

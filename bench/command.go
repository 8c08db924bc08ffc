package bench

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Access gives the ACL token and the TLS client configuration the load commands use against
// --nodes (the binary's global --token and --ca-file/--cert-file/--key-file). It is called when a
// command runs, after the global flags are parsed; nil means plain HTTP without a token.
type Access func() (token string, tlsCfg *tls.Config)

// NewCommand returns `raftkv bench` and its subcommands: put, get, mixed, cas (load against
// running nodes), failover and catchup (against a cluster the tool spawns itself).
func NewCommand(access Access) *cobra.Command {
	root := &cobra.Command{
		Use:   "bench",
		Short: "Measure a raftkv cluster over its HTTP API",
		Long: `Measure a raftkv cluster over its HTTP API.

put, get, mixed and cas load running nodes (--nodes) and report throughput and latency
percentiles next to baselines measured in the same run: the disk's fsync rate and a loopback
HTTP round-trip floor. failover and catchup start their own cluster of this binary.
Against a cluster with TLS or ACLs, the global --ca-file/--cert-file/--key-file and --token
apply to put, get, mixed and cas.`,
		SilenceUsage: true,
	}
	for _, w := range []struct{ name, short string }{
		{WorkloadPut, "Write values: PUT /v1/kv/<key>"},
		{WorkloadGet, "Read values: GET /v1/kv/<key>?raw (linearizable unless --stale)"},
		{WorkloadMixed, "Reads and writes, --read-ratio of them reads"},
		{WorkloadCAS, "Compare-and-set writes: PUT /v1/kv/<key>?cas=<index>"},
	} {
		root.AddCommand(newLoadCommand(w.name, w.short, access))
	}
	root.AddCommand(newFailoverCommand(), newCatchupCommand())
	return root
}

// output is the shared -o flag.
type output struct{ format string }

func (o *output) add(fs *pflag.FlagSet) {
	fs.StringVarP(&o.format, "output", "o", "table", "report format: table or json")
}

func (o *output) validate() error {
	if o.format != "table" && o.format != "json" {
		return fmt.Errorf("unknown output format %q (want table or json)", o.format)
	}
	return nil
}

// commandContext is the command's context, cancelled on SIGINT or SIGTERM so that spawned
// nodes are killed and partial results are still reported.
func commandContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}

func newLogger(w io.Writer, verbose bool) *slog.Logger {
	if !verbose {
		return nil
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func newLoadCommand(workload, short string, access Access) *cobra.Command {
	cfg := DefaultConfig()
	cfg.Workload = workload
	spawn := DefaultSpawnConfig()
	spawn.Nodes = 0
	var out output
	var stale, quiet, verbose bool
	cmd := &cobra.Command{
		Use:   workload,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			if stale {
				cfg.Consistency = ConsistencyStale
			}
			if !quiet {
				cfg.Progress = cmd.ErrOrStderr()
			}
			cfg.Logger = newLogger(cmd.ErrOrStderr(), verbose)
			if access != nil {
				cfg.Token, cfg.TLS = access()
			}
			ctx, cancel := commandContext(cmd)
			defer cancel()
			var rep *Report
			var err error
			if spawn.Nodes > 0 {
				rep, err = RunSpawned(ctx, cfg, spawn)
			} else {
				rep, err = Run(ctx, cfg)
			}
			if rep != nil {
				if werr := writeReport(cmd.OutOrStdout(), out.format, rep); werr != nil && err == nil {
					err = werr
				}
			}
			return err
		},
	}
	fs := cmd.Flags()
	fs.StringSliceVar(&cfg.Nodes, "nodes", cfg.Nodes, "HTTP addresses of the nodes, comma separated")
	fs.IntSliceVarP(&cfg.Clients, "clients", "c", cfg.Clients, "concurrent clients; a list (1,16,64) runs one measurement each")
	fs.IntVar(&cfg.Conns, "conns", cfg.Conns, "max TCP connections per node (0: one kept-alive connection per client)")
	fs.DurationVarP(&cfg.Duration, "duration", "d", cfg.Duration, "length of each measurement")
	fs.Int64VarP(&cfg.Total, "total", "n", cfg.Total, "requests per measurement (overrides --duration when > 0)")
	fs.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "unmeasured load before each measurement")
	fs.IntVar(&cfg.Keys, "keys", cfg.Keys, "key space size")
	fs.IntVar(&cfg.KeySize, "key-size", cfg.KeySize, "key length in bytes")
	fs.IntVar(&cfg.ValueSize, "value-size", cfg.ValueSize, "value length in bytes")
	fs.StringVar(&cfg.Target, "target", cfg.Target, "nodes to load: leader, followers or all")
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "per-request timeout")
	fs.DurationVar(&cfg.ErrorBackoff, "error-backoff", cfg.ErrorBackoff, "pause after a failed request")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "key choice seed (0: from the clock; the report shows it)")
	fs.BoolVar(&cfg.Baselines, "baselines", cfg.Baselines, "measure the fsync and loopback HTTP baselines first")
	fs.DurationVar(&cfg.BaselineDuration, "baseline-duration", cfg.BaselineDuration, "length of one baseline round")
	fs.IntVar(&cfg.BaselineRounds, "baseline-rounds", cfg.BaselineRounds, "rounds per baseline; the best is reported")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "directory on the nodes' filesystem for the fsync baseline")
	fs.BoolVarP(&quiet, "quiet", "q", false, "no live progress line")
	fs.BoolVarP(&verbose, "verbose", "v", false, "log diagnostics to stderr")
	out.add(fs)
	addSpawnFlags(fs, &spawn)
	fs.Lookup("spawn").Usage = "start this many nodes of this binary and load them instead of --nodes (0: use --nodes)"
	if workload != WorkloadPut {
		fs.BoolVar(&cfg.Prefill, "prefill", cfg.Prefill, "write every key once before measuring")
	}
	if workload == WorkloadGet || workload == WorkloadMixed {
		fs.StringVar(&cfg.Consistency, "consistency", cfg.Consistency, "read mode: default (linearizable), consistent or stale")
		fs.BoolVar(&stale, "stale", false, "shorthand for --consistency stale")
	}
	if workload == WorkloadMixed {
		fs.Float64Var(&cfg.ReadRatio, "read-ratio", cfg.ReadRatio, "fraction of requests that are reads")
	}
	return cmd
}

func addSpawnFlags(fs *pflag.FlagSet, c *SpawnConfig) {
	fs.IntVar(&c.Nodes, "spawn", c.Nodes, "number of nodes to start")
	fs.StringVar(&c.Binary, "binary", "", "raftkv binary to run as the nodes (default: this one)")
	fs.StringVar(&c.Dir, "dir", "", "directory for the nodes' data and logs (default: a temporary one)")
	fs.BoolVar(&c.Keep, "keep", false, "keep the nodes' data and logs")
	fs.DurationVar(&c.StabilizationTime, "server-stabilization-time", c.StabilizationTime, "passed to each server")
	fs.StringArrayVar(&c.ExtraArgs, "server-arg", nil, "extra argument for every server (repeatable)")
	fs.DurationVar(&c.ReadyTimeout, "ready-timeout", c.ReadyTimeout, "how long to wait for the cluster to form")
}

func newFailoverCommand() *cobra.Command {
	cfg := DefaultFailoverConfig()
	var out output
	var verbose bool
	cmd := &cobra.Command{
		Use:   "failover",
		Short: "Kill the leader of a spawned cluster under write load, N times, and time the recovery",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			cfg.Progress = cmd.ErrOrStderr()
			cfg.Logger = newLogger(cmd.ErrOrStderr(), verbose)
			ctx, cancel := commandContext(cmd)
			defer cancel()
			rep, err := Failover(ctx, cfg)
			if rep != nil {
				if werr := writeReport(cmd.OutOrStdout(), out.format, rep); werr != nil && err == nil {
					err = werr
				}
			}
			return err
		},
	}
	fs := cmd.Flags()
	addSpawnFlags(fs, &cfg.Spawn)
	fs.IntVar(&cfg.Kills, "kills", cfg.Kills, "leader kills")
	fs.IntVarP(&cfg.Clients, "clients", "c", cfg.Clients, "concurrent writers, spread over every node")
	fs.IntVar(&cfg.Keys, "keys", cfg.Keys, "key space size")
	fs.IntVar(&cfg.KeySize, "key-size", cfg.KeySize, "key length in bytes")
	fs.IntVar(&cfg.ValueSize, "value-size", cfg.ValueSize, "value length in bytes")
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "per-write timeout")
	fs.DurationVar(&cfg.Settle, "settle", cfg.Settle, "steady load between recovery and the next kill")
	fs.Uint64Var(&cfg.CatchupSlack, "catchup-slack", cfg.CatchupSlack, "entries a restarted node may lag and count as caught up")
	fs.DurationVar(&cfg.RecoverTimeout, "recover-timeout", cfg.RecoverTimeout, "give up on a kill after this long")
	fs.BoolVarP(&verbose, "verbose", "v", false, "log diagnostics to stderr")
	out.add(fs)
	return cmd
}

func newCatchupCommand() *cobra.Command {
	cfg := DefaultCatchupConfig()
	var out output
	var quiet, verbose bool
	cmd := &cobra.Command{
		Use:   "catchup",
		Short: "Time a restarted follower catching up on writes it missed, in a spawned cluster",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			if !quiet {
				cfg.Progress = cmd.ErrOrStderr()
			}
			cfg.Logger = newLogger(cmd.ErrOrStderr(), verbose)
			ctx, cancel := commandContext(cmd)
			defer cancel()
			rep, err := Catchup(ctx, cfg)
			if rep != nil {
				if werr := writeReport(cmd.OutOrStdout(), out.format, rep); werr != nil && err == nil {
					err = werr
				}
			}
			return err
		},
	}
	fs := cmd.Flags()
	addSpawnFlags(fs, &cfg.Spawn)
	fs.IntVar(&cfg.Writes, "writes", cfg.Writes, "writes the stopped follower misses (distinct keys)")
	fs.IntVarP(&cfg.Clients, "clients", "c", cfg.Clients, "concurrent writers")
	fs.IntVar(&cfg.KeySize, "key-size", cfg.KeySize, "key length in bytes")
	fs.IntVar(&cfg.ValueSize, "value-size", cfg.ValueSize, "value length in bytes")
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "per-write timeout")
	fs.DurationVar(&cfg.RecoverTimeout, "recover-timeout", cfg.RecoverTimeout, "give up waiting for catch-up after this long")
	fs.BoolVarP(&quiet, "quiet", "q", false, "no live progress line")
	fs.BoolVarP(&verbose, "verbose", "v", false, "log diagnostics to stderr")
	out.add(fs)
	return cmd
}

// tableWriter is a report that can print itself for people.
type tableWriter interface {
	WriteTable(io.Writer) error
}

func writeReport(w io.Writer, format string, rep tableWriter) error {
	if format == "json" {
		return writeJSON(w, rep)
	}
	return rep.WriteTable(w)
}

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	jepsenlite "github.com/raftkv/raftkv/jepsen-lite"
)

// Run parses args, runs the harness and returns the exit code.
func Run(ctx context.Context, args []string) (int, error) {
	code := exitHarness
	root := &cobra.Command{
		Use:           "jepsen-lite",
		Short:         "Drive a raftkv cluster under faults and check the history",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(runCmd(ctx, &code), checkCmd(&code))
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		return exitHarness, err
	}
	return code, nil
}

func runCmd(ctx context.Context, code *int) *cobra.Command {
	cfg := jepsenlite.DefaultConfig()
	var nemesis, logLevel, netns string
	var seed int64 = -1
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run one test: start a cluster, drive it under faults, check, report",
		Example: `  jepsen-lite run --nodes 3 --workload register --nemesis kill --time-limit 60s --seed 7
  jepsen-lite run --nodes 5 --workload set --nemesis all --combine --time-limit 10m
  jepsen-lite run --endpoints n1=127.0.0.1:8500,n2=127.0.0.1:8501,n3=127.0.0.1:8502 --time-limit 30s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if seed < 0 {
				seed = time.Now().UnixNano() % 1_000_000
			}
			cfg.Seed = uint64(seed)
			switch netns {
			case "":
			case "on":
				cfg.Net = "netns"
			case "off":
				cfg.Net = "proxy"
			case "auto":
				cfg.Net = "auto"
			default:
				return fmt.Errorf("--netns must be auto, on or off, not %q", netns)
			}
			switch nemesis {
			case "", "none":
				cfg.Faults = nil
			case "all":
				cfg.Faults = jepsenlite.AllFaults
			default:
				cfg.Faults = strings.Split(nemesis, ",")
			}
			if cfg.Dir == "" {
				cfg.Dir = filepath.Join("jepsen-runs", fmt.Sprintf("%s-%s-seed%d", time.Now().UTC().Format("20060102T150405"), cfg.Workload, cfg.Seed))
			}
			if abs, err := filepath.Abs(cfg.Binary); err == nil && cfg.Binary != "" {
				cfg.Binary = abs
			}
			cfg.Replay = replay(cmd, cfg.Seed)
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("log level: %w", err)
			}
			cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
			cfg.Out = os.Stdout
			cfg.Status = os.Stderr
			cfg.StatusTTY = isatty.IsTerminal(os.Stderr.Fd())
			res, err := jepsenlite.Run(ctx, cfg)
			if err != nil {
				if errors.Is(err, context.Canceled) {
					return fmt.Errorf("interrupted: %w", err)
				}
				return err
			}
			switch res.Verdict {
			case jepsenlite.Valid:
				*code = exitValid
			case jepsenlite.Invalid:
				*code = exitInvalid
			default:
				*code = exitUnknown
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "cluster size: 3 or 5")
	f.StringVar(&cfg.Workload, "workload", cfg.Workload, "register or set")
	f.StringVar(&nemesis, "nemesis", "none", "comma-separated faults: "+strings.Join(jepsenlite.AllFaults, ",")+"; or all, none")
	f.DurationVar(&cfg.TimeLimit, "time-limit", cfg.TimeLimit, "how long clients run")
	f.Int64Var(&seed, "seed", -1, "seed for every random choice (default: random, printed)")
	f.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "client workers")
	f.StringVar(&cfg.Binary, "binary", "bin/raftkv", "raftkv executable")
	f.StringVar(&cfg.Dir, "dir", "", "run directory (default jepsen-runs/<time>-<workload>-seed<N>)")
	f.StringSliceVar(&cfg.Endpoints, "endpoints", nil, "target a running cluster: id=ip:port,... (no faults)")
	f.StringVar(&cfg.Net, "net", cfg.Net, "netns|proxy|auto: network faults via a namespace per node and iptables (needs root), or via a proxy on every node-to-node link (no loss faults); auto = netns when root, else proxy")
	f.StringVar(&netns, "netns", "", "old spelling of --net: on = netns, off = proxy, auto")
	_ = f.MarkDeprecated("netns", "use --net netns|proxy|auto")
	f.DurationVar(&cfg.OpTimeout, "op-timeout", cfg.OpTimeout, "client request timeout")
	f.DurationVar(&cfg.FaultMin, "fault-min", cfg.FaultMin, "shortest fault window")
	f.DurationVar(&cfg.FaultMax, "fault-max", cfg.FaultMax, "longest fault window")
	f.DurationVar(&cfg.Heal, "heal", cfg.Heal, "quiet window between faults")
	f.BoolVar(&cfg.Combine, "combine", false, "overlap two fault classes at times (soak)")
	f.StringSliceVar(&cfg.Partitions, "partitions", nil, "restrict partition shapes: "+strings.Join(jepsenlite.PartitionShapes, ",")+" (default all that fit)")
	f.DurationVar(&cfg.CheckTimeout, "check-timeout", cfg.CheckTimeout, "porcupine search limit per key (expiry = unknown)")
	f.StringArrayVar(&cfg.ServerArgs, "server-arg", cfg.ServerArgs, "argument for every raftkv server (repeatable; replaces the default)")
	f.StringVar(&logLevel, "log-level", "info", "harness log level on stderr")
	return cmd
}

// replay is the command line that reproduces this run: every flag the user
// set, plus the seed.
func replay(cmd *cobra.Command, seed uint64) string {
	parts := []string{"jepsen-lite", "run"}
	cmd.Flags().Visit(func(f *pflag.Flag) {
		if f.Name == "seed" || f.Name == "dir" {
			return
		}
		parts = append(parts, "--"+f.Name+"="+f.Value.String())
	})
	return strings.Join(append(parts, fmt.Sprintf("--seed=%d", seed)), " ")
}

func checkCmd(code *int) *cobra.Command {
	var workload, dir string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "check HISTORY",
		Short: "Re-check a recorded history.jsonl offline (exit status = verdict)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, checks, err := jepsenlite.CheckHistory(args[0], workload, timeout, dir)
			if err != nil {
				return err
			}
			fmt.Printf("verdict: %s\n", v)
			for _, c := range checks {
				fmt.Printf("  %-13s %-8s %s\n", c.Name, c.Verdict, c.Summary)
				for _, d := range c.Details {
					fmt.Printf("  %s\n", d)
				}
				for _, f := range c.Files {
					fmt.Printf("  visualisation: %s\n", f)
				}
			}
			*code = map[jepsenlite.Verdict]int{jepsenlite.Valid: exitValid, jepsenlite.Invalid: exitInvalid, jepsenlite.Unknown: exitUnknown}[v]
			return nil
		},
	}
	cmd.Flags().StringVar(&workload, "workload", "register", "register or set: which checkers apply")
	cmd.Flags().DurationVar(&timeout, "check-timeout", time.Minute, "porcupine search limit per key")
	cmd.Flags().StringVar(&dir, "dir", "", "where to write visualisations of failing keys")
	return cmd
}

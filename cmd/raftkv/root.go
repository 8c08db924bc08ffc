package main

import (
	"crypto/tls"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/raftkv/raftkv/client"
)

// globals are the flags every client command shares.
type globals struct {
	httpAddr string
	output   string
	timeout  time.Duration
	token    string // ACL token sent as X-Consul-Token (--token / RAFTKV_TOKEN)
	// TLS to the node: --ca-file, --cert-file, --key-file, loaded into tls
	// (nil = plain HTTP) before any command runs (tls.go).
	caFile, certFile, keyFile string
	tls                       *tls.Config
}

func (g *globals) client() *client.Client { return g.clientFor(g.httpAddr) }

// clientFor is client() for another node's address, with the same token
// and TLS settings.
func (g *globals) clientFor(addr string) *client.Client {
	c := client.New(addr, g.timeout).WithToken(g.token)
	if g.tls != nil {
		c = c.WithTLS(g.tls)
	}
	return c
}

func (g *globals) validate() error {
	switch g.output {
	case "table", "json":
		return nil
	default:
		return usageError{fmt.Errorf("invalid -o %q: want table or json", g.output)}
	}
}

func newRootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "raftkv",
		Short:         "raftkv: a fault-tolerant key-value store replicated with Raft",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if err := applyEnv(cmd.Flags()); err != nil {
				return err
			}
			if err := g.loadTLS(); err != nil {
				return err
			}
			return g.validate()
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.httpAddr, "http-addr", "127.0.0.1:8501", "HTTP address of the node to talk to (env RAFTKV_HTTP_ADDR)")
	pf.StringVarP(&g.output, "output", "o", "table", "output format: table or json (env RAFTKV_OUTPUT)")
	pf.DurationVar(&g.timeout, "timeout", 15*time.Second, "request timeout for client commands (env RAFTKV_TIMEOUT)")
	pf.StringVar(&g.token, "token", "", "ACL token sent as X-Consul-Token when the cluster has ACLs on (env RAFTKV_TOKEN)")
	pf.StringVar(&g.caFile, "ca-file", "", "PEM CA bundle to verify the node's HTTPS certificate; any of the TLS flags makes client commands use HTTPS (env RAFTKV_CA_FILE)")
	pf.StringVar(&g.certFile, "cert-file", "", "PEM client certificate for nodes that verify incoming connections (env RAFTKV_CERT_FILE)")
	pf.StringVar(&g.keyFile, "key-file", "", "PEM private key of --cert-file (env RAFTKV_KEY_FILE)")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newServerCmd(), newKVCmd(g), newClusterCmd(g), newLocalClusterCmd(), newBenchCmd(g), newSnapshotCmd(g), newTLSCmd())
	groupUsage(root)
	return root
}

// groupUsage makes every command that only groups subcommands (raftkv,
// raftkv kv, raftkv cluster) reject an unknown subcommand as a usage error
// (exit 2) and print help when called bare. Without it cobra exits 0 on
// `raftkv kv frobnicate` and 1 on `raftkv frobnicate`.
func groupUsage(c *cobra.Command) {
	if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())}
			}
			return nil
		}
		c.RunE = func(cmd *cobra.Command, args []string) error { return cmd.Help() }
	}
	for _, sub := range c.Commands() {
		groupUsage(sub)
	}
}

// applyEnv fills every flag the user did not set from RAFTKV_<FLAG_NAME>,
// so flags always win over the environment.
func applyEnv(fs *pflag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		name := "RAFTKV_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = usageError{fmt.Errorf("environment %s=%q: %w", name, v, serr)}
			}
		}
	})
	return err
}

// exactArgs is cobra.ExactArgs returning a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

func rangeArgs(lo, hi int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.RangeArgs(lo, hi)(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

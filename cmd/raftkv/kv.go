package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/client"
)

// errCASMismatch: a --cas write did not match; exit 1.
var errCASMismatch = errors.New("cas mismatch: nothing written")

func newKVCmd(g *globals) *cobra.Command {
	kv := &cobra.Command{Use: "kv", Short: "Read and write keys"}
	kv.AddCommand(newKVPutCmd(g), newKVGetCmd(g), newKVDeleteCmd(g), newKVListCmd(g), newKVWatchCmd(g), newKVTxnCmd(g))
	return kv
}

func newKVPutCmd(g *globals) *cobra.Command {
	var cas int64
	var flags uint64
	cmd := &cobra.Command{
		Use:   "put KEY [VALUE|-]",
		Short: "Write a key (VALUE '-' or absent reads stdin)",
		Args:  rangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var value []byte
			if len(args) == 2 && args[1] != "-" {
				value = []byte(args[1])
			} else {
				var err error
				if value, err = io.ReadAll(cmd.InOrStdin()); err != nil {
					return fmt.Errorf("read value from stdin: %w", err)
				}
			}
			opts := client.PutOptions{Flags: flags}
			if cas >= 0 {
				c := uint64(cas)
				opts.CAS = &c
			}
			ok, idx, err := g.client().Put(cmd.Context(), args[0], value, opts)
			if err != nil {
				return err
			}
			if !ok {
				return errCASMismatch
			}
			return printOut(cmd.OutOrStdout(), g.output, map[string]any{"Key": args[0], "Index": idx},
				func(w io.Writer) { fmt.Fprintf(w, "ok, index %d\n", idx) })
		},
	}
	cmd.Flags().Int64Var(&cas, "cas", -1, "write only if the key's ModifyIndex equals this (0 = only if absent)")
	cmd.Flags().Uint64Var(&flags, "flags", 0, "opaque uint64 stored with the value")
	return cmd
}

func readMode(stale, consistent bool) (client.Consistency, error) {
	switch {
	case stale && consistent:
		return "", usageError{errors.New("--stale and --consistent are exclusive")}
	case stale:
		return client.Stale, nil
	case consistent:
		return client.Consistent, nil
	}
	return client.Default, nil
}

func newKVGetCmd(g *globals) *cobra.Command {
	var stale, consistent bool
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "Read a key (linearizable unless --stale); table output prints the value",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			mode, err := readMode(stale, consistent)
			if err != nil {
				return err
			}
			p, err := g.client().Get(cmd.Context(), args[0], mode)
			if err != nil {
				if errors.Is(err, client.ErrNotFound) {
					return fmt.Errorf("%s: %w", args[0], err)
				}
				return err
			}
			return printOut(cmd.OutOrStdout(), g.output, p, func(w io.Writer) { fmt.Fprintf(w, "%s\n", p.Value) })
		},
	}
	cmd.Flags().BoolVar(&stale, "stale", false, "read the answering node's local state (may be behind)")
	cmd.Flags().BoolVar(&consistent, "consistent", false, "linearizable read (the default)")
	return cmd
}

func newKVDeleteCmd(g *globals) *cobra.Command {
	var recurse bool
	var cas int64
	cmd := &cobra.Command{
		Use:   "delete KEY",
		Short: "Delete a key (or every key under a prefix with --recurse)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var casp *uint64
			if cas >= 0 {
				c := uint64(cas)
				casp = &c
			}
			ok, err := g.client().Delete(cmd.Context(), args[0], recurse, casp)
			if err != nil {
				return err
			}
			if !ok {
				return errCASMismatch
			}
			return printOut(cmd.OutOrStdout(), g.output, map[string]any{"Key": args[0], "Deleted": true},
				func(w io.Writer) { fmt.Fprintln(w, "ok") })
		},
	}
	cmd.Flags().BoolVar(&recurse, "recurse", false, "delete every key with this prefix")
	cmd.Flags().Int64Var(&cas, "cas", -1, "delete only if the key's ModifyIndex equals this")
	return cmd
}

func newKVListCmd(g *globals) *cobra.Command {
	var stale, keysOnly bool
	var sep string
	cmd := &cobra.Command{
		Use:   "list [PREFIX]",
		Short: "List entries (or key names with --keys) under a prefix",
		Args:  rangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			mode, err := readMode(stale, false)
			if err != nil {
				return err
			}
			c := g.client()
			if keysOnly {
				keys, err := c.Keys(cmd.Context(), prefix, sep, mode)
				if err != nil {
					return err
				}
				return printOut(cmd.OutOrStdout(), g.output, keys, func(w io.Writer) {
					for _, k := range keys {
						fmt.Fprintln(w, k)
					}
				})
			}
			pairs, err := c.List(cmd.Context(), prefix, mode)
			if err != nil {
				return err
			}
			return printOut(cmd.OutOrStdout(), g.output, pairs, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "KEY\tFLAGS\tCREATE\tMODIFY\tVALUE")
				for _, p := range pairs {
					v := string(p.Value)
					if len(v) > 40 {
						v = v[:37] + "..."
					}
					fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\n", p.Key, p.Flags, p.CreateIndex, p.ModifyIndex, strings.ReplaceAll(v, "\n", `\n`))
				}
				tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&stale, "stale", false, "read the answering node's local state")
	cmd.Flags().BoolVar(&keysOnly, "keys", false, "list key names only")
	cmd.Flags().StringVar(&sep, "separator", "", "with --keys, fold keys at this separator")
	return cmd
}

// printOut writes v as JSON for -o json, or calls table otherwise.
func printOut(w io.Writer, format string, v any, table func(io.Writer)) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	table(w)
	return nil
}

func newKVWatchCmd(g *globals) *cobra.Command {
	var recurse bool
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "watch KEY",
		Short: "Print KEY (or every key under it with --recurse) now and again each time it changes; Ctrl-C stops",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := g.client()
			out := cmd.OutOrStdout()
			var index uint64
			var last string
			for {
				pairs, next, err := c.Watch(cmd.Context(), args[0], recurse, index, wait)
				if cmd.Context().Err() != nil {
					return nil
				}
				if err != nil {
					return err
				}
				if next < index { // the node restarted or its index went back: start over
					next = 0
				}
				index = next
				b, err := json.Marshal(pairs)
				if err != nil {
					return fmt.Errorf("encode: %w", err)
				}
				if string(b) == last {
					continue
				}
				last = string(b)
				if err := printOut(out, g.output, pairs, func(w io.Writer) {
					if len(pairs) == 0 {
						fmt.Fprintf(w, "[index %d] %s: (absent)\n", index, args[0])
					}
					for _, p := range pairs {
						fmt.Fprintf(w, "[index %d] %s = %s\n", p.ModifyIndex, p.Key, p.Value)
					}
				}); err != nil {
					return err
				}
			}
		},
	}
	cmd.Flags().BoolVar(&recurse, "recurse", false, "watch every key under the prefix")
	cmd.Flags().DurationVar(&wait, "wait", 5*time.Minute, "longest a single blocking query waits")
	return cmd
}

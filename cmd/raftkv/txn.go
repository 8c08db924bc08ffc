package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/httpapi/wire"
)

func newKVTxnCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "txn [FILE|-]",
		Short: "Apply up to 64 operations all or nothing (Consul's /v1/txn body)",
		Long: `Apply a transaction: FILE (or stdin with - or no argument) holds a JSON array in
Consul's /v1/txn shape, for example

  [{"KV": {"Verb": "cas", "Key": "cfg/a", "Value": "MQ==", "Index": 12}},
   {"KV": {"Verb": "get", "Key": "cfg/b"}}]

Values are base64. Verbs: set, cas, get, get-tree, check-index, check-not-exists,
delete, delete-tree, delete-cas. Exit 0 when it took effect; exit 1 and the failing
operations when it was rolled back.`,
		Args: rangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in := cmd.InOrStdin()
			name := "stdin"
			if len(args) == 1 && args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return usageError{fmt.Errorf("open transaction file: %w", err)}
				}
				defer f.Close()
				in, name = f, args[0]
			}
			data, err := io.ReadAll(io.LimitReader(in, 4<<20))
			if err != nil {
				return fmt.Errorf("read transaction from %s: %w", name, err)
			}
			var ops []wire.TxnOp
			if err := json.Unmarshal(data, &ops); err != nil {
				return usageError{fmt.Errorf("transaction in %s is not a JSON array of operations: %w", name, err)}
			}
			if len(ops) == 0 || len(ops) > fsm.MaxTxnOps {
				return usageError{fmt.Errorf("transaction in %s has %d operations: give 1 to %d", name, len(ops), fsm.MaxTxnOps)}
			}
			kv := make([]wire.TxnKVOp, len(ops))
			for i, o := range ops {
				if o.KV == nil {
					return usageError{fmt.Errorf("operation %d in %s: only KV operations are supported", i, name)}
				}
				kv[i] = *o.KV
			}
			res, err := g.client().Txn(cmd.Context(), kv)
			if errors.Is(err, client.ErrTxnConflict) {
				_ = printOut(cmd.OutOrStdout(), g.output, res, func(w io.Writer) {
					for _, e := range res.Errors {
						fmt.Fprintf(w, "operation %d: %s\n", e.OpIndex, e.What)
					}
				})
				return err
			}
			if err != nil {
				return err
			}
			return printOut(cmd.OutOrStdout(), g.output, res, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "KEY\tFLAGS\tCREATE\tMODIFY\tVALUE")
				for _, r := range res.Results {
					p := r.KV
					fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\n", p.Key, p.Flags, p.CreateIndex, p.ModifyIndex, strings.ReplaceAll(string(p.Value), "\n", `\n`))
				}
				tw.Flush()
			})
		},
	}
}

package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/fsm"
)

func newSnapshotCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "snapshot", Short: "Back up and restore the cluster's state"}
	var stale bool
	save := &cobra.Command{
		Use:   "save FILE",
		Short: "Stream a consistent snapshot of the cluster into FILE",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dst := args[0]
			tmp, err := os.CreateTemp(filepath.Dir(dst), filepath.Base(dst)+".part-*")
			if err != nil {
				return fmt.Errorf("create %s: %w", dst, err)
			}
			defer os.Remove(tmp.Name()) // no-op after the rename
			bar := progressbar.DefaultBytes(-1, "saving")
			bar.Describe("saving " + dst)
			idx, n, err := g.client().SaveSnapshot(cmd.Context(), io.MultiWriter(tmp, bar), stale)
			_ = bar.Finish()
			if err == nil {
				err = tmp.Sync()
			}
			if cerr := tmp.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			// Check what arrived before it replaces anything.
			info, err := inspectFile(tmp.Name())
			if err != nil {
				return fmt.Errorf("the snapshot received is not valid: %w", err)
			}
			if err := os.Rename(tmp.Name(), dst); err != nil {
				return fmt.Errorf("rename into %s: %w", dst, err)
			}
			return printOut(cmd.OutOrStdout(), g.output, map[string]any{"File": dst, "Index": idx, "Bytes": n, "Keys": info.Keys},
				func(w io.Writer) { fmt.Fprintf(w, "saved %s: index %d, %d keys, %d bytes\n", dst, idx, info.Keys, n) })
		},
	}
	save.Flags().BoolVar(&stale, "stale", false, "take the answering node's local state without a linearizable barrier")

	restore := &cobra.Command{
		Use:   "restore FILE",
		Short: "Replace the whole cluster's state with the snapshot in FILE",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			info, err := inspectFile(args[0])
			if err != nil {
				return err
			}
			f, err := os.Open(args[0])
			if err != nil {
				return fmt.Errorf("open snapshot: %w", err)
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				return fmt.Errorf("stat snapshot: %w", err)
			}
			bar := progressbar.DefaultBytes(st.Size(), "restoring")
			r := progressbar.NewReader(f, bar)
			idx, err := g.client().RestoreSnapshot(cmd.Context(), &r, st.Size())
			_ = bar.Finish()
			if err != nil {
				return err
			}
			return printOut(cmd.OutOrStdout(), g.output, map[string]any{"File": args[0], "Index": idx, "Keys": info.Keys},
				func(w io.Writer) { fmt.Fprintf(w, "restored %s (%d keys) at index %d\n", args[0], info.Keys, idx) })
		},
	}
	inspect := &cobra.Command{
		Use:   "inspect FILE",
		Short: "Verify a snapshot file and describe it (no cluster needed)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			info, err := inspectFile(args[0])
			if err != nil {
				return err
			}
			return printOut(cmd.OutOrStdout(), g.output, info, func(w io.Writer) {
				fmt.Fprintf(w, "File:          %s\nValid:         yes (framing, length, SHA-256, bbolt image)\n", args[0])
				fmt.Fprintf(w, "Applied index: %d\nKeys:          %d\nMeta keys:     %d\nImage bytes:   %d\n", info.AppliedIndex, info.Keys, info.MetaKeys, info.ImageBytes)
			})
		},
	}
	c.AddCommand(save, restore, inspect)
	return c
}

func inspectFile(path string) (fsm.SnapshotInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return fsm.SnapshotInfo{}, fmt.Errorf("open snapshot: %w", err)
	}
	defer f.Close()
	info, err := fsm.InspectSnapshot(f, os.TempDir())
	if err != nil {
		return fsm.SnapshotInfo{}, fmt.Errorf("%s: %w", path, err)
	}
	return info, nil
}

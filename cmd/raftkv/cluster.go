package main

import (
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/httpapi/wire"
)

func newClusterCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "cluster", Short: "Inspect and change cluster membership"}
	c.AddCommand(
		&cobra.Command{
			Use:   "members",
			Short: "List the servers in the Raft configuration",
			Args:  exactArgs(0),
			RunE: func(cmd *cobra.Command, args []string) error {
				rc, err := g.client().Configuration(cmd.Context())
				if err != nil {
					return err
				}
				return printOut(cmd.OutOrStdout(), g.output, rc, func(w io.Writer) {
					tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "ID\tRAFT ADDRESS\tHTTP ADDRESS\tROLE\tVOTER")
					for _, s := range rc.Servers {
						role := "follower"
						if s.Leader {
							role = "leader"
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%t\n", s.ID, s.Address, s.HTTPAddr, role, s.Voter)
					}
					tw.Flush()
				})
			},
		},
		&cobra.Command{
			Use:   "status",
			Short: "Show the status of the node at --http-addr",
			Args:  exactArgs(0),
			RunE: func(cmd *cobra.Command, args []string) error {
				s, err := g.client().Status(cmd.Context())
				if err != nil {
					return err
				}
				return printOut(cmd.OutOrStdout(), g.output, s, func(w io.Writer) { printStatus(w, s) })
			},
		},
		&cobra.Command{
			Use:   "join ADDR",
			Short: "Make the node at --http-addr join the cluster that the node at ADDR (HTTP) belongs to",
			Args:  exactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				self, err := g.client().Status(cmd.Context())
				if err != nil {
					return fmt.Errorf("read status of the joining node: %w", err)
				}
				req := wire.JoinRequest{ID: self.ID, RaftAddr: self.RaftAddr, HTTPAddr: self.HTTPAddr}
				if err := g.clientFor(args[0]).Join(cmd.Context(), req); err != nil {
					return err
				}
				return printOut(cmd.OutOrStdout(), g.output, req, func(w io.Writer) {
					fmt.Fprintf(w, "%s joined via %s\n", self.ID, args[0])
				})
			},
		},
		newLeaveCmd(g),
		newHealthCmd(g),
		&cobra.Command{
			Use:   "remove ID",
			Short: "Remove server ID from the cluster (it need not be running)",
			Args:  exactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				if err := g.client().Remove(cmd.Context(), args[0]); err != nil {
					return err
				}
				return printOut(cmd.OutOrStdout(), g.output, map[string]any{"Removed": args[0]}, func(w io.Writer) {
					fmt.Fprintf(w, "removed %s\n", args[0])
				})
			},
		},
	)
	return c
}

func newLeaveCmd(g *globals) *cobra.Command {
	var id string
	cmd := &cobra.Command{
		Use:   "leave",
		Short: "Gracefully remove the node at --http-addr (or --id) from the cluster; a leader hands over first",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := g.client()
			if id == "" {
				s, err := c.Status(cmd.Context())
				if err != nil {
					return fmt.Errorf("read status of the leaving node: %w", err)
				}
				id = s.ID
			}
			if err := c.Leave(cmd.Context(), id); err != nil {
				return err
			}
			return printOut(cmd.OutOrStdout(), g.output, map[string]any{"Left": id}, func(w io.Writer) {
				fmt.Fprintf(w, "%s left the cluster\n", id)
			})
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "ID of the server to remove (default: the node at --http-addr)")
	return cmd
}

func printStatus(w io.Writer, s wire.NodeStatus) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	rows := []struct {
		k string
		v any
	}{
		{"ID", s.ID}, {"State", s.State}, {"Term", s.Term}, {"Leader", fmt.Sprintf("%s (%s, http %s)", s.LeaderID, s.LeaderAddr, s.LeaderHTTPAddr)},
		{"Raft address", s.RaftAddr}, {"HTTP address", s.HTTPAddr},
		{"Last index", s.LastIndex}, {"Commit index", s.CommitIndex}, {"Applied index", s.AppliedIndex},
		{"Last contact (ms)", s.LastContactMs}, {"Member", s.Member}, {"Voter", s.Voter},
		{"Snapshots taken", s.SnapshotsTaken}, {"Snapshot restores", s.Restores},
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s:\t%v\n", r.k, r.v)
	}
	tw.Flush()
}

func newHealthCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "health",
		Short: "Show the leader's failure-detector view of every server (exit 1 when unhealthy)",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, healthy, err := g.client().Health(cmd.Context())
			if err != nil {
				return err
			}
			if err := printOut(cmd.OutOrStdout(), g.output, h, func(w io.Writer) {
				fmt.Fprintf(w, "Healthy: %t   Failure tolerance: %d   Leader: %s\n\n", h.Healthy, h.FailureTolerance, h.Leader)
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tADDRESS\tROLE\tVOTER\tHEALTHY\tREACHABLE\tLAST CONTACT\tLAST INDEX\tLAG\tTERM\tSINCE")
				for _, s := range h.Servers {
					role := "follower"
					if s.Leader {
						role = "leader"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%t\t%t\t%t\t%s\t%d\t%d\t%d\t%s\n", s.ID, s.Address, role, s.Voter,
						s.Healthy, s.Reachable, s.LastContact, s.LastIndex, s.Lag, s.LastTerm, s.StableSince)
				}
				tw.Flush()
			}); err != nil {
				return err
			}
			if !healthy {
				return errors.New("cluster is not healthy")
			}
			return nil
		},
	}
}

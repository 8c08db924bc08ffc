package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/internal/tlsutil"
)

const day = 24 * time.Hour

// loadTLS turns --ca-file, --cert-file and --key-file into the client TLS
// configuration; none of them = plain HTTP.
func (g *globals) loadTLS() error {
	if g.caFile == "" && g.certFile == "" && g.keyFile == "" {
		return nil
	}
	if (g.certFile == "") != (g.keyFile == "") {
		return usageError{errors.New("--cert-file and --key-file go together: give both or neither")}
	}
	cfg, err := tlsutil.ClientFiles(g.caFile, g.certFile, g.keyFile)
	if err != nil {
		return fmt.Errorf("client TLS: %w", err)
	}
	g.tls = cfg
	return nil
}

// newTLSCmd is `raftkv tls`: a development CA and the certificates signed
// by it.
func newTLSCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tls",
		Short: "Make a development CA and node/client certificates (ECDSA P-256)",
		Long: `Make a development CA and certificates signed by it, for TLS between nodes and
for clients. Files go to --dir: ca.pem and ca-key.pem for the CA, NAME.pem and
NAME-key.pem for a certificate (keys mode 0600). Existing files are never
replaced without --force.

  raftkv tls ca --dir certs
  raftkv tls cert --dir certs --name n1 --hosts 127.0.0.1,localhost
  raftkv tls cert --dir certs --name client --client

A node certificate (the default) is valid as server and as client, so one
certificate serves both sides of mutual TLS; --hosts lists the DNS names and
IP addresses other nodes and clients use to reach the node. A --client
certificate only authenticates a client to the HTTP API: the Raft port refuses
it.`,
	}
	cmd.AddCommand(newTLSCACmd(), newTLSCertCmd())
	return cmd
}

func newTLSCACmd() *cobra.Command {
	var (
		dir   string
		days  int
		force bool
	)
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Make a CA: DIR/ca.pem and DIR/ca-key.pem",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if days <= 0 {
				return usageError{fmt.Errorf("--days %d: want a positive number", days)}
			}
			certFile, keyFile, err := tlsutil.WriteCA(dir, time.Duration(days)*day, force)
			if err != nil {
				return refusedOverwrite(err, "certificates signed by the old CA stop verifying")
			}
			return printWritten(cmd.OutOrStdout(), certFile, keyFile)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "certs", "directory for the CA files (created if missing)")
	f.IntVar(&days, "days", 3650, "validity in days")
	f.BoolVar(&force, "force", false, "replace existing files")
	return cmd
}

func newTLSCertCmd() *cobra.Command {
	var (
		dir, name     string
		hosts         []string
		days          int
		client, force bool
	)
	cmd := &cobra.Command{
		Use:   "cert",
		Short: "Issue a certificate signed by the CA in --dir: DIR/NAME.pem and DIR/NAME-key.pem",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := tlsutil.ValidName(name); err != nil {
				return usageError{fmt.Errorf("--name: %w", err)}
			}
			if !client && len(hosts) == 0 {
				return usageError{errors.New("--hosts is required for a node certificate (the names and IPs it is reached at), or pass --client")}
			}
			if days <= 0 {
				return usageError{fmt.Errorf("--days %d: want a positive number", days)}
			}
			req := tlsutil.CertRequest{Name: name, Hosts: hosts, Client: client, ValidFor: time.Duration(days) * day}
			certFile, keyFile, err := tlsutil.WriteCert(dir, req, force)
			if err != nil {
				return refusedOverwrite(err, "")
			}
			return printWritten(cmd.OutOrStdout(), certFile, keyFile)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "certs", "directory holding ca.pem and ca-key.pem; the certificate is written there")
	f.StringVar(&name, "name", "", "certificate name: subject common name and file name (required)")
	f.StringSliceVar(&hosts, "hosts", nil, "DNS names and IP addresses the certificate is valid for, comma-separated (required unless --client)")
	f.BoolVar(&client, "client", false, "a client-only certificate (for the CLI and HTTP clients; refused by the Raft port)")
	f.IntVar(&days, "days", 365, "validity in days (never beyond the CA's)")
	f.BoolVar(&force, "force", false, "replace existing files (re-issue: new key, new serial)")
	return cmd
}

// refusedOverwrite explains an existing-file refusal; other errors pass.
func refusedOverwrite(err error, consequence string) error {
	var pe *fs.PathError
	if errors.Is(err, fs.ErrExist) && errors.As(err, &pe) {
		msg := fmt.Sprintf("%s already exists; pass --force to replace it", pe.Path)
		if consequence != "" {
			msg += " (" + consequence + ")"
		}
		return errors.New(msg)
	}
	return err
}

func printWritten(w io.Writer, certFile, keyFile string) error {
	_, err := fmt.Fprintf(w, "wrote %s\nwrote %s (mode 0600)\n", certFile, keyFile)
	return err
}

package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/tlsutil"
)

type localClusterFlags struct {
	nodes     int
	httpBase  int
	raftBase  int
	dataDir   string
	fresh     bool
	extraArgs []string
	tlsDir    string
}

// newLocalClusterCmd is what `make run` runs: N server processes on
// loopback, stopped together on Ctrl-C.
func newLocalClusterCmd() *cobra.Command {
	lf := &localClusterFlags{}
	cmd := &cobra.Command{
		Use:   "local-cluster",
		Short: "Run a local N-node cluster on loopback (what `make run` starts); Ctrl-C stops it",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLocalCluster(cmd.Context(), lf, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.IntVar(&lf.nodes, "nodes", 3, "number of nodes")
	f.IntVar(&lf.httpBase, "http-port", 8501, "HTTP port of the first node; the others follow")
	f.IntVar(&lf.raftBase, "raft-port", 8301, "Raft port of the first node; the others follow")
	f.StringVar(&lf.dataDir, "data-dir", "data", "parent directory of the nodes' data dirs (kept between runs)")
	f.BoolVar(&lf.fresh, "fresh", false, "wipe the data dirs first")
	f.StringSliceVar(&lf.extraArgs, "server-arg", nil, "extra flag passed to every server, e.g. --server-arg=--log-level=debug")
	f.StringVar(&lf.tlsDir, "tls-dir", "", "run with TLS: certificates in DIR (a CA, n1..nN and a client certificate are made there when missing)")
	return cmd
}

func runLocalCluster(ctx context.Context, lf *localClusterFlags, out io.Writer) error {
	if lf.nodes < 1 || lf.nodes > 9 {
		return usageError{fmt.Errorf("--nodes %d: want 1..9", lf.nodes)}
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	if lf.fresh {
		if err := os.RemoveAll(lf.dataDir); err != nil {
			return fmt.Errorf("wipe %s: %w", lf.dataDir, err)
		}
	}
	var lt *localTLS
	if lf.tlsDir != "" {
		if lt, err = ensureLocalCerts(lf.tlsDir, lf.nodes, out); err != nil {
			return err
		}
	}
	firstHTTP := "127.0.0.1:" + strconv.Itoa(lf.httpBase)
	var procs []*exec.Cmd
	var exited []chan struct{} // closed when procs[i] exits
	stopAll := func() {
		for _, p := range procs {
			_ = p.Process.Signal(syscall.SIGTERM)
		}
		for _, e := range exited {
			<-e
		}
	}
	for i := 1; i <= lf.nodes; i++ {
		id := "n" + strconv.Itoa(i)
		dir := filepath.Join(lf.dataDir, id)
		if err := os.MkdirAll(dir, 0o750); err != nil {
			stopAll()
			return fmt.Errorf("create %s: %w", dir, err)
		}
		httpAddr := "127.0.0.1:" + strconv.Itoa(lf.httpBase+i-1)
		args := []string{"server", "--id", id, "--data-dir", filepath.Join(dir, "data"),
			"--http-addr", httpAddr, "--raft-addr", "127.0.0.1:" + strconv.Itoa(lf.raftBase+i-1)}
		if i == 1 {
			args = append(args, "--bootstrap")
		} else {
			args = append(args, "--join", firstHTTP)
		}
		args = append(args, lt.serverArgs(id)...)
		args = append(args, lf.extraArgs...)
		logf, err := os.OpenFile(filepath.Join(dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			stopAll()
			return fmt.Errorf("open log: %w", err)
		}
		p := exec.Command(exe, args...)
		p.Stdout, p.Stderr = logf, logf
		// Own process group: Ctrl-C reaches us, and we stop the nodes in order.
		p.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := p.Start(); err != nil {
			logf.Close()
			stopAll()
			return fmt.Errorf("start %s: %w", id, err)
		}
		logf.Close()
		procs = append(procs, p)
		done := make(chan struct{})
		exited = append(exited, done)
		go func() { _ = p.Wait(); close(done) }() // ends when the node exits; stopAll waits for it
		fmt.Fprintf(out, "started %s (pid %d): http %s, logs %s\n", id, p.Process.Pid, httpAddr, filepath.Join(dir, "server.log"))
	}
	defer stopAll()

	if err := waitClusterReady(ctx, lt.client(firstHTTP, 2*time.Second), lf.nodes, 30*time.Second, exited); err != nil {
		return fmt.Errorf("%w (see the nodes' server.log under %s)", err, lf.dataDir)
	}
	if lt != nil {
		curl := "curl " + lt.curlArgs()
		fmt.Fprintf(out, `
raftkv: %d-node cluster ready, TLS on (certificates in %s). Try:
  %s -X PUT -d hello https://%s/v1/kv/greeting
  %s https://127.0.0.1:%d/v1/kv/greeting?raw
  bin/raftkv %s cluster members
Ctrl-C stops every node.
`, lf.nodes, lf.tlsDir, curl, firstHTTP, curl, lf.httpBase+lf.nodes-1, lt.cliArgs())
	} else {
		fmt.Fprintf(out, `
raftkv: %d-node cluster ready. Try:
  curl -X PUT -d hello http://%s/v1/kv/greeting
  curl http://127.0.0.1:%d/v1/kv/greeting?raw
  curl http://%s/v1/operator/raft/configuration
  bin/raftkv cluster members
Ctrl-C stops every node.
`, lf.nodes, firstHTTP, lf.httpBase+lf.nodes-1, firstHTTP)
	}
	<-ctx.Done()
	fmt.Fprintln(out, "stopping...")
	return nil
}

// anyExited reports the first node process that has exited.
func anyExited(exited []chan struct{}) (int, bool) {
	for i, e := range exited {
		select {
		case <-e:
			return i, true
		default:
		}
	}
	return 0, false
}

// waitClusterReady polls until the node c talks to sees n voters and a leader,
// failing as soon as one of our own node processes exits (a busy port, say:
// then whatever answers on addr is not our cluster).
func waitClusterReady(ctx context.Context, c *client.Client, n int, timeout time.Duration, exited []chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		if i, ok := anyExited(exited); ok {
			return fmt.Errorf("node n%d exited during start-up", i+1)
		}
		rc, err := c.Configuration(ctx)
		if err == nil {
			voters, leader := 0, false
			for _, s := range rc.Servers {
				if s.Voter {
					voters++
				}
				leader = leader || s.Leader
			}
			if voters >= n && leader {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not ready after %s: %w", timeout, errors.Join(ctx.Err(), err))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// localTLS is the certificate directory of a local TLS cluster; nil = no TLS.
type localTLS struct {
	dir string // absolute
	cfg *tls.Config
}

// ensureLocalCerts makes what is missing in dir: a CA, node certificates
// n1..nN for 127.0.0.1 and localhost, and a client certificate "client".
// A CA made now re-issues every certificate (old ones would not verify).
func ensureLocalCerts(dir string, nodes int, out io.Writer) (*localTLS, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("tls dir %s: %w", dir, err)
	}
	caCert, caKey := tlsutil.CAPaths(abs)
	haveCert, haveKey := fileExists(caCert), fileExists(caKey)
	if haveCert != haveKey {
		return nil, fmt.Errorf("tls dir %s has only one of ca.pem and ca-key.pem: remove it or add the other", dir)
	}
	newCA := !haveCert
	if newCA {
		if _, _, err := tlsutil.WriteCA(abs, 10*365*day, false); err != nil {
			return nil, fmt.Errorf("make CA: %w", err)
		}
		fmt.Fprintf(out, "made a development CA in %s\n", dir)
	}
	names := []string{"client"}
	for i := 1; i <= nodes; i++ {
		names = append(names, "n"+strconv.Itoa(i))
	}
	for _, name := range names {
		cert, key := tlsutil.CertPaths(abs, name)
		if !newCA && fileExists(cert) && fileExists(key) {
			continue
		}
		req := tlsutil.CertRequest{Name: name, Hosts: []string{"127.0.0.1", "localhost"}, ValidFor: 365 * day}
		if name == "client" {
			req = tlsutil.CertRequest{Name: name, Client: true, ValidFor: 365 * day}
		}
		if _, _, err := tlsutil.WriteCert(abs, req, true); err != nil {
			return nil, fmt.Errorf("make certificate %s: %w", name, err)
		}
		fmt.Fprintf(out, "made certificate %s in %s\n", name, dir)
	}
	lt := &localTLS{dir: abs}
	cert, key := tlsutil.CertPaths(abs, "client")
	if lt.cfg, err = tlsutil.ClientFiles(caCert, cert, key); err != nil {
		return nil, err
	}
	return lt, nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// serverArgs are node id's TLS flags.
func (lt *localTLS) serverArgs(id string) []string {
	if lt == nil {
		return nil
	}
	cert, key := tlsutil.CertPaths(lt.dir, id)
	ca, _ := tlsutil.CAPaths(lt.dir)
	return []string{"--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-file", ca}
}

// client talks to addr, over HTTPS with the client certificate when TLS is on.
func (lt *localTLS) client(addr string, timeout time.Duration) *client.Client {
	c := client.New(addr, timeout)
	if lt != nil {
		c = c.WithTLS(lt.cfg)
	}
	return c
}

func (lt *localTLS) curlArgs() string {
	ca, _ := tlsutil.CAPaths(lt.dir)
	cert, key := tlsutil.CertPaths(lt.dir, "client")
	return fmt.Sprintf("--cacert %s --cert %s --key %s", ca, cert, key)
}

func (lt *localTLS) cliArgs() string {
	ca, _ := tlsutil.CAPaths(lt.dir)
	cert, key := tlsutil.CertPaths(lt.dir, "client")
	return fmt.Sprintf("--ca-file %s --cert-file %s --key-file %s", ca, cert, key)
}

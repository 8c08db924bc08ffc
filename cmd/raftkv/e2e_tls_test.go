package main

// End-to-end test of TLS: a 3-node cluster of raftkv processes whose
// certificates were made by `raftkv tls` itself, serving HTTPS with client
// certificates required, Raft over mutual TLS, and certificates reloaded
// on SIGHUP.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/tlsutil"
)

// tlsCluster is an e2eCluster whose nodes serve HTTPS.
type tlsCluster struct {
	*e2eCluster
	dir string      // the certificate directory
	cli *tls.Config // the CA and the "client" certificate
}

// client talks HTTPS to n with the client certificate.
func (c *tlsCluster) client(n *e2eNode, timeout time.Duration) *client.Client {
	return n.client(timeout)
}

// cliTLS are the CLI's TLS flags for the client certificate.
func (c *tlsCluster) cliTLS() []string {
	return []string{"--ca-file", filepath.Join(c.dir, "ca.pem"),
		"--cert-file", filepath.Join(c.dir, "client.pem"), "--key-file", filepath.Join(c.dir, "client-key.pem")}
}

// makeCerts runs `raftkv tls` to make a CA in dir, node certificates for
// nodes and a client-only certificate "client".
func makeCerts(t *testing.T, dir string, nodes ...string) {
	t.Helper()
	mustCLI := func(args ...string) {
		t.Helper()
		if res := runCLI(t, args...); res.code != 0 {
			t.Fatalf("raftkv %s: exit %d, stderr %q", strings.Join(args, " "), res.code, res.stderr)
		}
	}
	mustCLI("tls", "ca", "--dir", dir)
	for _, n := range nodes {
		mustCLI("tls", "cert", "--dir", dir, "--name", n, "--hosts", "127.0.0.1,localhost")
	}
	mustCLI("tls", "cert", "--dir", dir, "--name", "client", "--client")
}

// startTLSCluster starts n nodes with TLS, each with its own certificate:
// n1 bootstraps, the others join it over HTTPS. It returns once every node
// is a voter and a leader is known.
func startTLSCluster(t *testing.T, n int) *tlsCluster {
	t.Helper()
	bin := raftkvBinary(t)
	dir := t.TempDir()
	c := &tlsCluster{e2eCluster: &e2eCluster{t: t}, dir: filepath.Join(dir, "certs")}
	var ids []string
	for i := 1; i <= n; i++ {
		ids = append(ids, fmt.Sprintf("n%d", i))
	}
	makeCerts(t, c.dir, ids...)
	var err error
	if c.cli, err = tlsutil.ClientFiles(filepath.Join(c.dir, "ca.pem"), filepath.Join(c.dir, "client.pem"), filepath.Join(c.dir, "client-key.pem")); err != nil {
		t.Fatalf("client TLS from the generated files: %v", err)
	}

	ports := freePorts(t, 2*n)
	for i, id := range ids {
		c.nodes = append(c.nodes, &e2eNode{
			id:       id,
			dataDir:  filepath.Join(dir, id, "data"),
			httpAddr: ports[2*i],
			raftAddr: ports[2*i+1],
			logPath:  filepath.Join(dir, id+".log"),
			bin:      bin,
			tls:      c.cli,
			flags: []string{"--server-stabilization-time", "1s",
				"--tls-cert-file", filepath.Join(c.dir, id+".pem"),
				"--tls-key-file", filepath.Join(c.dir, id+"-key.pem"),
				"--tls-ca-file", filepath.Join(c.dir, "ca.pem")},
		})
	}
	stopAndDumpOnCleanup(t, func() []*e2eNode { return c.nodes })

	c.bootstrapAndJoin(t, 40*time.Second) // over HTTPS: the nodes carry the client TLS config
	return c
}

// certSerial reads the serial of the PEM certificate in path.
func certSerial(t *testing.T, path string) *big.Int {
	t.Helper()
	cert, err := tlsutil.ReadCertFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return cert.SerialNumber
}

// dialTLS makes a new TLS connection to addr with cfg (server name
// 127.0.0.1), exchanges whatever the server requires and returns the
// certificate it served. Under TLS 1.3 a server refuses a client
// certificate only after the client's handshake finished, so refusal shows
// on the first read: with refusalWait > 0, dialTLS reads and returns the
// read's error if the server closes the connection within refusalWait.
func dialTLS(addr string, cfg *tls.Config, refusalWait time.Duration) (*x509.Certificate, error) {
	cfg = cfg.Clone()
	cfg.ServerName = "127.0.0.1"
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	served := conn.ConnectionState().PeerCertificates[0]
	if refusalWait > 0 {
		_ = conn.SetReadDeadline(time.Now().Add(refusalWait))
		_, err = conn.Read(make([]byte, 1))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			err = nil // the server kept the connection: accepted
		}
	}
	return served, err
}

// logCount counts occurrences of s in n's log.
func logCount(n *e2eNode, s string) int {
	data, _ := os.ReadFile(n.logPath)
	return strings.Count(string(data), s)
}

func TestTLSEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: starts raftkv processes; skipped with -short")
	}
	c := startTLSCluster(t, 3)
	ctx := context.Background()
	all := c.nodes
	caFile := filepath.Join(c.dir, "ca.pem")

	steps := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"CertFiles", func(t *testing.T) {
			for _, f := range []string{"ca-key.pem", "n1-key.pem", "client-key.pem"} {
				st, err := os.Stat(filepath.Join(c.dir, f))
				if err != nil {
					t.Fatal(err)
				}
				if st.Mode().Perm() != 0o600 {
					t.Errorf("%s: mode %v, want 0600", f, st.Mode().Perm())
				}
			}
			before, _ := os.ReadFile(caFile)
			res := runCLI(t, "tls", "ca", "--dir", c.dir)
			if res.code != 1 || !strings.Contains(res.stderr, "--force") {
				t.Errorf("tls ca over an existing CA: exit %d, stderr %q; want 1 and a hint about --force", res.code, res.stderr)
			}
			if after, _ := os.ReadFile(caFile); string(after) != string(before) {
				t.Error("refused tls ca changed ca.pem")
			}
			if res := runCLI(t, "tls", "cert", "--dir", c.dir, "--name", "x"); res.code != 2 {
				t.Errorf("tls cert without --hosts: exit %d, want 2 (usage)", res.code)
			}
		}},

		{"WritesAndLinearizableReadsOnEveryNode", func(t *testing.T) {
			leader := c.e2eCluster.leader(t, c.nodes, 10*time.Second)
			for _, n := range all {
				ok, idx, err := c.client(n, 5*time.Second).Put(ctx, "tls/"+n.id, []byte("via-"+n.id), client.PutOptions{})
				if err != nil || !ok || idx == 0 {
					t.Fatalf("put through %s (leader %s): ok %t, index %d, err %v", n.id, leader.id, ok, idx, err)
				}
			}
			// Followers forward writes to the leader and fetch read indexes
			// from it, both over HTTPS with their node certificate.
			for _, reader := range all {
				for _, mode := range []client.Consistency{client.Default, client.Consistent} {
					for _, writer := range all {
						p, err := c.client(reader, 5*time.Second).Get(ctx, "tls/"+writer.id, mode)
						if err != nil {
							t.Fatalf("get tls/%s on %s (mode %q): %v", writer.id, reader.id, mode, err)
						}
						if got, want := string(p.Value), "via-"+writer.id; got != want {
							t.Errorf("get tls/%s on %s (mode %q): got %q, want %q", writer.id, reader.id, mode, got, want)
						}
					}
				}
			}
		}},

		{"CLI", func(t *testing.T) {
			leader := c.e2eCluster.leader(t, c.nodes, 10*time.Second)
			follower := c.others(leader)[0]
			args := append(c.cliTLS(), "--http-addr", follower.httpAddr, "kv", "put", "tls/cli", "hello")
			if res := runCLI(t, args...); res.code != 0 {
				t.Fatalf("kv put over HTTPS through follower %s: exit %d, stderr %q", follower.id, res.code, res.stderr)
			}
			args = append(c.cliTLS(), "--http-addr", c.others(leader)[1].httpAddr, "kv", "get", "tls/cli")
			if res := runCLI(t, args...); res.code != 0 || res.stdout != "hello\n" {
				t.Errorf("kv get over HTTPS: exit %d, stdout %q; want 0, %q", res.code, res.stdout, "hello\n")
			}
			// Without the TLS flags the CLI speaks plain HTTP and fails.
			if res := runCLI(t, "--http-addr", follower.httpAddr, "kv", "get", "tls/cli"); res.code == 0 {
				t.Errorf("kv get without TLS flags against an HTTPS node: exit 0, stdout %q", res.stdout)
			}
			// A key without its certificate is a usage error.
			if res := runCLI(t, "--ca-file", caFile, "--key-file", filepath.Join(c.dir, "client-key.pem"), "kv", "get", "x"); res.code != 2 {
				t.Errorf("--key-file without --cert-file: exit %d, want 2", res.code)
			}
		}},

		{"PlainHTTPRefused", func(t *testing.T) {
			hc := &http.Client{Timeout: 5 * time.Second}
			for _, n := range all {
				resp, err := hc.Get("http://" + n.httpAddr + "/v1/kv/tls/" + n.id + "?raw")
				if err == nil {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusBadRequest || strings.Contains(string(body), "via-") {
						t.Errorf("plain HTTP GET on %s: %d %q, want 400 and no data", n.id, resp.StatusCode, body)
					}
				}
				req, _ := http.NewRequest(http.MethodPut, "http://"+n.httpAddr+"/v1/kv/plain/"+n.id, strings.NewReader("x"))
				if resp, err := hc.Do(req); err == nil {
					resp.Body.Close()
					if resp.StatusCode/100 == 2 {
						t.Errorf("plain HTTP PUT on %s: status %d", n.id, resp.StatusCode)
					}
				}
				if _, err := c.client(n, 5*time.Second).Get(ctx, "plain/"+n.id, client.Default); !errors.Is(err, client.ErrNotFound) {
					t.Errorf("after a plain HTTP PUT on %s: get plain/%s: %v, want not found", n.id, n.id, err)
				}
			}
		}},

		{"ClientCertificateRequired", func(t *testing.T) {
			caOnly, err := tlsutil.ClientFiles(caFile, "", "")
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range all {
				_, err := client.New(n.httpAddr, 5*time.Second).WithTLS(caOnly).Status(ctx)
				if err == nil {
					t.Errorf("HTTPS without a client certificate on %s: accepted", n.id)
					continue
				}
				t.Logf("%s without a client certificate: %v", n.id, err)
				_, _, err = client.New(n.httpAddr, 5*time.Second).WithTLS(caOnly).Put(ctx, "nocert/"+n.id, []byte("x"), client.PutOptions{})
				if err == nil {
					t.Errorf("HTTPS PUT without a client certificate on %s: accepted", n.id)
				}
			}
			if _, err := c.client(all[0], 5*time.Second).Get(ctx, "nocert/"+all[0].id, client.Default); !errors.Is(err, client.ErrNotFound) {
				t.Errorf("get nocert/%s: %v, want not found", all[0].id, err)
			}
		}},

		{"RaftRefusesOtherCertificates", func(t *testing.T) {
			rogueDir := filepath.Join(t.TempDir(), "rogue")
			makeCerts(t, rogueDir, "n1") // same names, another CA
			load := func(dir, name string) *tls.Config {
				// Trust the real CA: only the server's check of our
				// certificate can stop us.
				cfg, err := tlsutil.ClientFiles(caFile, filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem"))
				if err != nil {
					t.Fatal(err)
				}
				return cfg
			}
			target := all[1]
			// Positive control: a node certificate of the cluster's CA is
			// accepted, and the Raft port serves the node's certificate.
			served, err := dialTLS(target.raftAddr, load(c.dir, "n1"), 2*time.Second)
			if err != nil {
				t.Fatalf("raft TLS with n1's certificate to %s: %v", target.id, err)
			}
			if want := certSerial(t, filepath.Join(c.dir, target.id+".pem")); served.SerialNumber.Cmp(want) != 0 {
				t.Errorf("raft port of %s served serial %x, want %x", target.id, served.SerialNumber, want)
			}
			for name, cfg := range map[string]*tls.Config{
				"node certificate of another CA":    load(rogueDir, "n1"),
				"client-only certificate of the CA": load(c.dir, "client"),
				"no certificate":                    func() *tls.Config { cfg, _ := tlsutil.ClientFiles(caFile, "", ""); return cfg }(),
			} {
				_, err := dialTLS(target.raftAddr, cfg, 10*time.Second)
				if err == nil {
					t.Errorf("raft TLS to %s with %s: accepted", target.id, name)
					continue
				}
				if !strings.Contains(err.Error(), "tls") {
					t.Errorf("raft TLS to %s with %s: %v, want a TLS refusal", target.id, name, err)
				}
				t.Logf("raft TLS to %s with %s: %v", target.id, name, err)
			}
			// Plain TCP to the raft port: not TLS, closed.
			conn, err := net.DialTimeout("tcp", target.raftAddr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_, _ = conn.Write([]byte{0, 0x81, 0xa4, 'T', 'e', 'r', 'm', 9})
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err = conn.Read(make([]byte, 64))
			var ne net.Error
			if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
				t.Errorf("plain TCP to the raft port of %s: read %v, want the connection closed", target.id, err)
			}
			if n := logCount(target, "raft: refused a connection"); n < 4 {
				t.Errorf("%s logged %d refused raft connections, want at least 4", target.id, n)
			}
			// The cluster is unharmed.
			put(t, target, "tls/after-rogue", "ok", 10*time.Second)
		}},

		{"VerifyIncomingOff", func(t *testing.T) {
			// Restart one follower with --tls-verify-incoming=false: HTTPS
			// clients without a certificate may use it (plain curl
			// --cacert), a certificate that is presented must still verify,
			// and Raft stays mutual.
			leader := c.e2eCluster.leader(t, c.nodes, 10*time.Second)
			n := c.others(leader)[1]
			n.stop(t)
			n.flags = append(slices.Clone(n.flags), "--tls-verify-incoming=false")
			c.restart(t, n)
			c.waitVoters(t, all, 40*time.Second)
			caOnly, err := tlsutil.ClientFiles(caFile, "", "")
			if err != nil {
				t.Fatal(err)
			}
			anon := client.New(n.httpAddr, 5*time.Second).WithTLS(caOnly)
			ok, _, err := anon.Put(ctx, "tls/anonymous", []byte("yes"), client.PutOptions{})
			if err != nil || !ok {
				t.Fatalf("put without a client certificate through %s (verify-incoming off, forwarded to the leader): ok %t, %v", n.id, ok, err)
			}
			if p, err := anon.Get(ctx, "tls/anonymous", client.Default); err != nil || string(p.Value) != "yes" {
				t.Errorf("linearizable read without a client certificate on %s: %q, %v", n.id, p.Value, err)
			}
			rogueDir := filepath.Join(t.TempDir(), "rogue")
			makeCerts(t, rogueDir)
			rogue, err := tlsutil.ClientFiles(caFile, filepath.Join(rogueDir, "client.pem"), filepath.Join(rogueDir, "client-key.pem"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := client.New(n.httpAddr, 5*time.Second).WithTLS(rogue).Status(ctx); err == nil {
				t.Errorf("%s accepted a client certificate of another CA with verify-incoming off", n.id)
			}
			// Still required everywhere else.
			if _, err := client.New(leader.httpAddr, 5*time.Second).WithTLS(caOnly).Status(ctx); err == nil {
				t.Errorf("leader %s (verify-incoming on) accepted a client without a certificate", leader.id)
			}
		}},

		{"SIGHUPReloadsCertificates", func(t *testing.T) {
			leader := c.e2eCluster.leader(t, c.nodes, 10*time.Second)
			f := c.others(leader)[0]
			certFile := filepath.Join(c.dir, f.id+".pem")
			httpCfg := c.cli
			raftCfg, err := tlsutil.ClientFiles(caFile, filepath.Join(c.dir, leader.id+".pem"), filepath.Join(c.dir, leader.id+"-key.pem"))
			if err != nil {
				t.Fatal(err)
			}
			seen := func() (httpSerial, raftSerial *big.Int, err error) {
				h, err := dialTLS(f.httpAddr, httpCfg, 0)
				if err != nil {
					return nil, nil, fmt.Errorf("https: %w", err)
				}
				r, err := dialTLS(f.raftAddr, raftCfg, 0)
				if err != nil {
					return nil, nil, fmt.Errorf("raft: %w", err)
				}
				return h.SerialNumber, r.SerialNumber, nil
			}
			old := certSerial(t, certFile)
			if h, r, err := seen(); err != nil || h.Cmp(old) != 0 || r.Cmp(old) != 0 {
				t.Fatalf("before reload %s serves %x (https) and %x (raft), err %v; want %x", f.id, h, r, err, old)
			}

			// Re-issue (new key, new serial) and SIGHUP: new connections see it.
			if res := runCLI(t, "tls", "cert", "--dir", c.dir, "--name", f.id, "--hosts", "127.0.0.1,localhost", "--force"); res.code != 0 {
				t.Fatalf("re-issue %s: exit %d, stderr %q", f.id, res.code, res.stderr)
			}
			fresh := certSerial(t, certFile)
			if fresh.Cmp(old) == 0 {
				t.Fatal("re-issued certificate has the old serial")
			}
			if err := f.sendSignal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 10*time.Second, f.id+" to serve the re-issued certificate", func() error {
				h, r, err := seen()
				if err != nil {
					return err
				}
				if h.Cmp(fresh) != 0 || r.Cmp(fresh) != 0 {
					return fmt.Errorf("serves %x (https) and %x (raft), want %x", h, r, fresh)
				}
				return nil
			})
			// Its outgoing connections use it too: a write through it is
			// forwarded to the leader, a linearizable read asks for a read index.
			put(t, f, "tls/after-reload", "ok", 10*time.Second)
			if p, err := c.client(f, 5*time.Second).Get(ctx, "tls/after-reload", client.Default); err != nil || string(p.Value) != "ok" {
				t.Errorf("read after reload on %s: %q, %v", f.id, p.Value, err)
			}

			// A broken certificate file: the reload fails and the node keeps
			// serving the previous certificate.
			failures := logCount(f, "SIGHUP: reload failed")
			if err := os.WriteFile(certFile, []byte("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := f.sendSignal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 10*time.Second, f.id+" to log the failed reload", func() error {
				if n := logCount(f, "SIGHUP: reload failed"); n <= failures {
					return fmt.Errorf("%d failed reloads logged, want %d", n, failures+1)
				}
				return nil
			})
			if h, r, err := seen(); err != nil || h.Cmp(fresh) != 0 || r.Cmp(fresh) != 0 {
				t.Errorf("after a failed reload %s serves %x (https) and %x (raft), err %v; want still %x", f.id, h, r, err, fresh)
			}
			put(t, f, "tls/after-bad-reload", "ok", 10*time.Second)
		}},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.fn) {
			t.Fatalf("step %s failed; later steps depend on it", s.name)
		}
	}
}

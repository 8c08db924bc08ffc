package main

// End-to-end test of ACLs with real processes: a 3-node cluster started with
// --acl-file (its joins only work because the servers' own calls carry the
// management token), the CLI with and without --token, a SIGHUP reload that
// revokes a token, a bad reload that keeps the rules in force, a bad file at
// start (exit 2), and a restart that rejoins and serves linearizable reads.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
)

const (
	e2eMgmt = "e2e-mgmt-5c81f0d2a9"
	e2eApp  = "e2e-app-3b7e19c4d6"
	e2eOps  = "e2e-ops-8a2d6f1e07"
)

// e2eACLFile writes the ACL file: the management token, an ops token that
// may write every key and, when withApp, an app token that may write app/.
func e2eACLFile(t *testing.T, path string, withApp bool) {
	t.Helper()
	s := `default_policy = "deny"
management_token = "` + e2eMgmt + `"

[[token]]
name = "ops"
secret = "` + e2eOps + `"
[[token.rule]]
prefix = ""
policy = "write"
`
	if withApp {
		s += `
[[token]]
name = "app"
secret = "` + e2eApp + `"
[[token.rule]]
prefix = "app/"
policy = "write"
`
	}
	writeFileAtomic(t, path, s)
}

// writeFileAtomic replaces path with data in one rename, so a reload never
// reads a half-written file.
func writeFileAtomic(t *testing.T, path, data string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
		t.Fatalf("write %s: %v", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatalf("rename %s: %v", tmp, err)
	}
}

// logHas reports nil once n's log has a line containing every one of
// parts after the line holding marker (the whole log for "").
func logHas(n *e2eNode, marker string, parts ...string) error {
	data, err := os.ReadFile(n.logPath)
	if err != nil {
		return fmt.Errorf("read log of %s: %w", n.id, err)
	}
	if marker != "" {
		i := bytes.LastIndex(data, []byte(marker))
		if i < 0 {
			return fmt.Errorf("log of %s has no %q yet", n.id, marker)
		}
		data = data[i:]
	}
	for _, line := range strings.Split(string(data), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return nil
		}
	}
	return fmt.Errorf("log of %s has no line with %q", n.id, parts)
}

func TestEndToEndACL(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: starts raftkv processes; skipped with -short")
	}
	aclPath := filepath.Join(t.TempDir(), "acl.toml")
	e2eACLFile(t, aclPath, true)
	// The nodes 2 and 3 join through n1: that needs the management token.
	c := startClusterWith(t, 3, "--acl-file", aclPath)
	ctx := context.Background()
	leader := c.leader(t, c.nodes, 10*time.Second)
	follower := c.others(leader)[0]

	t.Run("CLIToken", func(t *testing.T) {
		res := runCLI(t, "--http-addr", follower.httpAddr, "--token", e2eApp, "kv", "put", "app/k", "v1")
		if res.code != 0 {
			t.Fatalf("kv put --token app through follower %s: exit %d, stderr %q, want 0", follower.id, res.code, res.stderr)
		}
		res = runCLI(t, "--http-addr", leader.httpAddr, "--token", e2eApp, "kv", "get", "app/k")
		if res.code != 0 || res.stdout != "v1\n" {
			t.Errorf("kv get --token app: exit %d, stdout %q; want 0, %q", res.code, res.stdout, "v1\n")
		}
		res = runCLI(t, "--http-addr", follower.httpAddr, "kv", "put", "app/k", "no-token")
		if res.code == 0 {
			t.Fatalf("kv put without a token: exit 0, want non-zero")
		}
		if want := `Permission denied: token lacks write on "app/k"`; !strings.Contains(res.stderr, want) {
			t.Errorf("kv put without a token: stderr %q, want it to contain %q", res.stderr, want)
		}
		res = runCLI(t, "--http-addr", follower.httpAddr, "--token", e2eApp, "kv", "put", "other/k", "x")
		if res.code == 0 || !strings.Contains(res.stderr, `lacks write on "other/k"`) {
			t.Errorf("kv put outside the app token's prefix: exit %d, stderr %q; want non-zero and a permission message", res.code, res.stderr)
		}
		// RAFTKV_TOKEN works like --token.
		cmd := exec.Command(raftkvBinary(t), "--http-addr", leader.httpAddr, "kv", "get", "app/k")
		cmd.Env = append(cleanEnv(), "RAFTKV_TOKEN="+e2eApp)
		out, err := cmd.Output()
		if err != nil || string(out) != "v1\n" {
			t.Errorf("kv get with RAFTKV_TOKEN: %q, %v; want %q", out, err, "v1\n")
		}
		for _, s := range []string{e2eMgmt, e2eApp, e2eOps} {
			for _, n := range c.nodes {
				if err := logHas(n, "", s); err == nil {
					t.Errorf("the log of %s contains a secret", n.id)
				}
			}
		}
	})

	t.Run("SIGHUPRevokes", func(t *testing.T) {
		e2eACLFile(t, aclPath, false)
		for _, n := range c.nodes {
			if err := n.sendSignal(syscall.SIGHUP); err != nil {
				t.Fatalf("SIGHUP %s: %v", n.id, err)
			}
		}
		refused := func(err error) error {
			var ce *client.Error
			if !errors.As(err, &ce) || ce.Status != 403 || ce.Message != "ACL not found" {
				return fmt.Errorf("got %v, want 403 ACL not found", err)
			}
			return nil
		}
		for _, n := range c.nodes {
			// Poll with reads, so no write slips through before the reload.
			waitFor(t, 15*time.Second, "the app token to be refused by "+n.id, func() error {
				_, err := n.client(2*time.Second).WithToken(e2eApp).Get(ctx, "app/k", client.Stale)
				return refused(err)
			})
		}
		for _, n := range c.nodes {
			_, _, err := n.client(5*time.Second).WithToken(e2eApp).Put(ctx, "app/k", []byte("revoked"), client.PutOptions{})
			if err := refused(err); err != nil {
				t.Errorf("put with the revoked token through %s: %v", n.id, err)
			}
		}
		p, err := leader.client(5*time.Second).WithToken(e2eOps).Get(ctx, "app/k", client.Default)
		if err != nil || string(p.Value) != "v1" {
			t.Errorf("app/k after refused writes: %q, %v; want %q", p.Value, err, "v1")
		}

		// A bad file on reload is logged and the rules in force stay.
		writeFileAtomic(t, aclPath, "management_token = \""+e2eMgmt+"\"\nbogus = 1\n")
		if err := follower.sendSignal(syscall.SIGHUP); err != nil {
			t.Fatalf("SIGHUP %s: %v", follower.id, err)
		}
		waitFor(t, 15*time.Second, follower.id+" to log the failed reload", func() error {
			return logHas(follower, "", "reload failed", "bogus")
		})
		if _, _, err := follower.client(5*time.Second).WithToken(e2eOps).Put(ctx, "ops/after-bad-reload", []byte("ok"), client.PutOptions{}); err != nil {
			t.Errorf("ops put after a bad reload: %v; want the previous rules still in force", err)
		}
		e2eACLFile(t, aclPath, false)
	})

	t.Run("BadFileAtStart", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad-acl.toml")
		if err := os.WriteFile(bad, []byte("management_token = \"m\"\n[[token]]\nname = \"x\"\nsecret = \"\"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		addrs := freePorts(t, 2)
		res := runCLI(t, "server", "--id", "bad", "--data-dir", filepath.Join(t.TempDir(), "d"), "--bootstrap",
			"--http-addr", addrs[0], "--raft-addr", addrs[1], "--acl-file", bad)
		if res.code != 2 {
			t.Errorf("server with a bad acl file: exit %d, want 2 (stderr %q)", res.code, res.stderr)
		}
		if !strings.Contains(res.stderr, bad) || !strings.Contains(res.stderr, "secret: missing or empty") {
			t.Errorf("server with a bad acl file: stderr %q, want the file name and what is wrong", res.stderr)
		}
	})

	t.Run("RestartRejoins", func(t *testing.T) {
		n := c.others(c.leader(t, c.nodes, 10*time.Second))[1]
		n.stop(t)
		survivors := c.others(n)
		for i := range 20 {
			waitFor(t, 10*time.Second, "ops put while "+n.id+" is down", func() error {
				_, _, err := survivors[i%2].client(2*time.Second).WithToken(e2eOps).Put(ctx, fmt.Sprintf("down/%02d", i), []byte("x"), client.PutOptions{})
				return err
			})
		}
		marker := fmt.Sprintf("=== e2e: start #%d", n.starts+1)
		c.restart(t, n) // --join the others: the join loop needs the management token
		waitFor(t, 30*time.Second, n.id+" to rejoin through its join loop", func() error {
			return logHas(n, marker, "joined the cluster")
		})
		c.waitVoters(t, c.nodes, 30*time.Second)
		// A linearizable read on the restarted follower asks the leader for
		// a read index, with the management token.
		waitFor(t, 15*time.Second, "a linearizable read on "+n.id, func() error {
			p, err := n.client(2*time.Second).WithToken(e2eOps).Get(ctx, "down/19", client.Consistent)
			if err != nil {
				return err
			}
			if string(p.Value) != "x" {
				return fmt.Errorf("down/19 = %q, want %q", p.Value, "x")
			}
			return nil
		})
		if err := logHas(n, marker, "join attempt failed"); err == nil {
			t.Errorf("%s logged a failed join attempt after its restart; the management token should make the first one work", n.id)
		}
	})
}

// TestWarnExposed: a listener other machines can reach without TLS or ACLs
// gets one warning naming its address; loopback listeners get none.
func TestWarnExposed(t *testing.T) {
	for _, tc := range []struct {
		name           string
		http, raft     string
		tlsOn, aclOn   bool
		want, wantNone []string
	}{
		{"loopback", "127.0.0.1:8501", "127.0.0.1:8301", false, false, nil, []string{"level=WARN"}},
		{"localhost and ipv6 loopback", "localhost:8501", "[::1]:8301", false, false, nil, []string{"level=WARN"}},
		{"all interfaces, nothing", "0.0.0.0:8501", ":8301", false, false,
			[]string{"http_addr=0.0.0.0:8501", "without TLS", "and ACLs (--acl-file)", "raft_addr=:8301"}, nil},
		{"exposed http with TLS, no ACL", "10.0.0.1:8501", "127.0.0.1:8301", true, false,
			[]string{"http_addr=10.0.0.1:8501", "without ACLs (--acl-file)"}, []string{"raft_addr", "without TLS"}},
		{"exposed with ACLs, no TLS", "10.0.0.1:8501", "10.0.0.1:8301", false, true,
			[]string{"http_addr=10.0.0.1:8501", "raft_addr=10.0.0.1:8301", "without TLS"}, []string{"ACLs (--acl-file)"}},
		{"exposed with TLS and ACLs", "node1.example:8501", "10.0.0.1:8301", true, true, nil, []string{"level=WARN"}},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			var buf bytes.Buffer
			warnExposed(slog.New(slog.NewTextHandler(&buf, nil)), tc.http, tc.raft, tc.tlsOn, tc.aclOn)
			out := buf.String()
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("log %q lacks %q", out, w)
				}
			}
			for _, w := range tc.wantNone {
				if strings.Contains(out, w) {
					t.Errorf("log %q has %q, want not", out, w)
				}
			}
		})
	}
}

package main

// Process-level helpers for the end-to-end tests in e2e_test.go: build the
// raftkv binary once, start nodes as separate processes on loopback, kill or
// stop them, and poll the cluster with deadlines.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/httpapi/wire"
)

// printLogs prints every node's log after each end-to-end test, not only
// after a failure: go test -run EndToEnd -v -args -e2e.logs
var printLogs = flag.Bool("e2e.logs", false, "print the raftkv nodes' logs after every end-to-end test")

var (
	buildOnce sync.Once
	binDir    string // removed by TestMain
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// raftkvBinary builds the raftkv binary once per test binary and returns its
// path. The module root is ../.. from this package.
func raftkvBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "raftkv-e2e-bin-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "raftkv")
		cmd := exec.Command("go", "build", "-tags", "hashicorpmetrics", "-o", binPath, "./cmd/raftkv")
		cmd.Dir = filepath.Join("..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/raftkv: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build raftkv: %v", buildErr)
	}
	return binPath
}

// freePort returns a loopback address with a port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pick a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// freePorts returns k distinct loopback addresses that were free a moment
// ago. Unlike k calls of freePort, it holds every listener until all are
// chosen, so the kernel cannot hand the same port out twice.
func freePorts(t *testing.T, k int) []string {
	t.Helper()
	var addrs []string
	for range k {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("pick a free port: %v", err)
		}
		defer ln.Close()
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs
}

// waitFor calls cond until it returns nil or timeout passes, then fails the
// test with cond's last error.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s still waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(20 * time.Millisecond) // poll interval, not a condition stand-in
	}
}

// e2eNode is one raftkv server process. Its ports and data dir stay the same
// across restarts.
type e2eNode struct {
	id       string
	dataDir  string
	httpAddr string
	raftAddr string
	logPath  string
	bin      string
	// flags are server flags passed on every start and restart (timeouts,
	// snapshot tuning), before the start's own --bootstrap or --join.
	flags []string
	// tls, when set, is how the test's clients talk to a TLS node (the CA
	// and a client certificate).
	tls *tls.Config

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the running process has exited
	logFile *os.File
	starts  int
}

func (n *e2eNode) client(timeout time.Duration) *client.Client {
	c := client.New(n.httpAddr, timeout)
	if n.tls != nil {
		c = c.WithTLS(n.tls)
	}
	return c
}

func (n *e2eNode) running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// start runs the server with the identity flags plus extra (--bootstrap or
// --join ...). Output is appended to the node's log file.
func (n *e2eNode) start(t *testing.T, extra ...string) {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		select {
		case <-n.done:
		default:
			t.Fatalf("start %s: already running", n.id)
		}
	}
	if n.logFile == nil {
		f, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatalf("open log of %s: %v", n.id, err)
		}
		n.logFile = f
	}
	n.starts++
	args := append([]string{"server",
		"--id", n.id,
		"--data-dir", n.dataDir,
		"--http-addr", n.httpAddr,
		"--raft-addr", n.raftAddr,
	}, n.flags...)
	args = append(args, extra...)
	fmt.Fprintf(n.logFile, "=== e2e: start #%d at %s: raftkv %s\n", n.starts, time.Now().Format(time.RFC3339Nano), strings.Join(args, " "))
	cmd := exec.Command(n.bin, args...)
	cmd.Env = cleanEnv()
	cmd.Stdout = n.logFile
	cmd.Stderr = n.logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", n.id, err)
	}
	done := make(chan struct{})
	go func() { // owned by the node: ends when the process exits
		err := cmd.Wait()
		n.mu.Lock()
		fmt.Fprintf(n.logFile, "=== e2e: process exited at %s: %v\n", time.Now().Format(time.RFC3339Nano), err)
		n.mu.Unlock()
		close(done)
	}()
	n.cmd, n.done = cmd, done
}

// kill sends SIGKILL and waits for the process to be gone.
func (n *e2eNode) kill(t *testing.T) {
	t.Helper()
	n.signal(t, syscall.SIGKILL, 10*time.Second)
}

// stop sends SIGTERM, waits up to 15s, then SIGKILLs.
func (n *e2eNode) stop(t *testing.T) {
	t.Helper()
	if !n.signal(t, syscall.SIGTERM, 15*time.Second) {
		t.Errorf("%s did not stop within 15s of SIGTERM; killing it", n.id)
		n.kill(t)
	}
}

func (n *e2eNode) signal(t *testing.T, sig syscall.Signal, wait time.Duration) bool {
	t.Helper()
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return true
	}
	select {
	case <-done:
		return true
	default:
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("signal %s to %s: %v", sig, n.id, err)
	}
	select {
	case <-done:
		return true
	case <-time.After(wait):
		return false
	}
}

// tail returns the last max lines of the node's log.
func (n *e2eNode) tail(max int) string {
	data, err := os.ReadFile(n.logPath)
	if err != nil {
		return fmt.Sprintf("(read log: %v)", err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > max {
		lines = append([]string{fmt.Sprintf("... (%d earlier lines in %s)", len(lines)-max, n.logPath)}, lines[len(lines)-max:]...)
	}
	return strings.Join(lines, "\n")
}

// e2eCluster is a set of raftkv server processes on loopback.
type e2eCluster struct {
	t     *testing.T
	nodes []*e2eNode
}

// startCluster starts n nodes: n1 bootstraps, the others join it. It returns
// once every node is a voter and a leader is known. Every node is stopped in
// t.Cleanup, and the logs are printed if the test failed.
func startCluster(t *testing.T, n int) *e2eCluster {
	t.Helper()
	return startClusterWith(t, n)
}

// startClusterWith is startCluster with server flags that every node gets on
// every start and restart.
func startClusterWith(t *testing.T, n int, flags ...string) *e2eCluster {
	t.Helper()
	bin := raftkvBinary(t)
	dir := t.TempDir()
	c := &e2eCluster{t: t}
	ports := freePorts(t, 2*n)
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("n%d", i)
		c.nodes = append(c.nodes, &e2eNode{
			id:       id,
			dataDir:  filepath.Join(dir, id, "data"),
			httpAddr: ports[2*(i-1)],
			raftAddr: ports[2*(i-1)+1],
			logPath:  filepath.Join(dir, id+".log"),
			bin:      bin,
			flags:    flags,
		})
	}
	stopAndDumpOnCleanup(t, func() []*e2eNode { return c.nodes })

	c.bootstrapAndJoin(t, 30*time.Second)
	return c
}

// bootstrapAndJoin starts the first node with --bootstrap, waits for it to
// lead, starts the others with --join to it, and waits until every node is
// a voter under one leader (within timeout).
func (c *e2eCluster) bootstrapAndJoin(t *testing.T, timeout time.Duration) {
	t.Helper()
	c.nodes[0].start(t, "--bootstrap")
	c.leader(t, c.nodes[:1], 20*time.Second)
	for _, nd := range c.nodes[1:] {
		nd.start(t, "--join", c.nodes[0].httpAddr)
	}
	c.waitVoters(t, c.nodes, timeout)
}

// stopAndDumpOnCleanup stops every node when the test ends and, if it
// failed (or -e2e.logs), logs the tail of each node's log. nodes is called
// at cleanup time, so nodes added during the test are stopped too.
func stopAndDumpOnCleanup(t *testing.T, nodes func() []*e2eNode) {
	// Cleanups run last-registered first: stop every node, then dump logs.
	t.Cleanup(func() {
		if t.Failed() || *printLogs {
			for _, nd := range nodes() {
				t.Logf("---- log of %s (http %s, raft %s) ----\n%s", nd.id, nd.httpAddr, nd.raftAddr, nd.tail(400))
			}
		}
		for _, nd := range nodes() {
			if nd.logFile != nil {
				nd.logFile.Close()
			}
		}
	})
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, nd := range nodes() {
			wg.Go(func() { nd.stop(t) })
		}
		wg.Wait()
	})
}

// restart starts a stopped node again with its data dir and --join pointing
// at every other node (never --bootstrap).
func (c *e2eCluster) restart(t *testing.T, n *e2eNode) {
	t.Helper()
	var others []string
	for _, o := range c.nodes {
		if o != n {
			others = append(others, o.httpAddr)
		}
	}
	n.start(t, "--join", strings.Join(others, ","))
}

func (c *e2eCluster) node(id string) *e2eNode {
	for _, n := range c.nodes {
		if n.id == id {
			return n
		}
	}
	c.t.Fatalf("no node %s", id)
	return nil
}

func (c *e2eCluster) others(n *e2eNode) []*e2eNode {
	var out []*e2eNode
	for _, o := range c.nodes {
		if o != n {
			out = append(out, o)
		}
	}
	return out
}

// checkVoters reports nil when the configuration seen through via lists
// exactly the IDs of want, all voters, with one of them leader.
func checkVoters(via *e2eNode, want []*e2eNode) error {
	rc, err := via.client(time.Second).Configuration(context.Background())
	if err != nil {
		return err
	}
	var got, wantIDs []string
	leaders := 0
	for _, s := range rc.Servers {
		if !s.Voter {
			return fmt.Errorf("via %s: %s is not a voter: %+v", via.id, s.ID, rc.Servers)
		}
		if s.Leader {
			leaders++
		}
		got = append(got, s.ID)
	}
	for _, n := range want {
		wantIDs = append(wantIDs, n.id)
	}
	slices.Sort(got)
	slices.Sort(wantIDs)
	if !slices.Equal(got, wantIDs) {
		return fmt.Errorf("via %s: servers %v, want %v", via.id, got, wantIDs)
	}
	if leaders != 1 {
		return fmt.Errorf("via %s: %d servers marked leader, want 1: %+v", via.id, leaders, rc.Servers)
	}
	return nil
}

// waitVoters waits until every node in want sees a configuration of exactly
// want, all voters, with a leader.
func (c *e2eCluster) waitVoters(t *testing.T, want []*e2eNode, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("%d voters with a leader", len(want)), func() error {
		for _, n := range want {
			if err := checkVoters(n, want); err != nil {
				return err
			}
		}
		return nil
	})
}

// leader waits until the running nodes among candidates agree on one leader
// among them, and returns it.
func (c *e2eCluster) leader(t *testing.T, candidates []*e2eNode, timeout time.Duration) *e2eNode {
	t.Helper()
	var leader *e2eNode
	waitFor(t, timeout, "an agreed leader", func() error {
		leader = nil
		var ids []string
		for _, n := range candidates {
			if !n.running() {
				continue
			}
			s, err := n.client(time.Second).Status(context.Background())
			if err != nil {
				return err
			}
			ids = append(ids, s.LeaderID)
			if s.State == "Leader" {
				leader = n
			}
		}
		if leader == nil {
			return fmt.Errorf("no node is leader; leader IDs seen: %v", ids)
		}
		for _, id := range ids {
			if id != leader.id {
				return fmt.Errorf("%s leads but nodes report leaders %v", leader.id, ids)
			}
		}
		return nil
	})
	return leader
}

// waitCaughtUp waits until n's applied index reaches the commit index the
// leader reports now.
func waitCaughtUp(t *testing.T, n, leader *e2eNode, timeout time.Duration) wire.NodeStatus {
	t.Helper()
	var target uint64
	waitFor(t, timeout, "the leader's commit index", func() error {
		s, err := leader.client(time.Second).Status(context.Background())
		if err != nil {
			return err
		}
		target = s.CommitIndex
		return nil
	})
	var st wire.NodeStatus
	waitFor(t, timeout, fmt.Sprintf("%s to apply up to the leader's commit index %d", n.id, target), func() error {
		s, err := n.client(time.Second).Status(context.Background())
		if err != nil {
			return err
		}
		st = s
		if s.AppliedIndex < target {
			return fmt.Errorf("%s applied %d < %d", n.id, s.AppliedIndex, target)
		}
		return nil
	})
	return st
}

// put writes key=value through n, retrying until it succeeds or timeout.
func put(t *testing.T, n *e2eNode, key, value string, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("put %s via %s", key, n.id), func() error {
		ok, _, err := n.client(2*time.Second).Put(context.Background(), key, []byte(value), client.PutOptions{})
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("put answered false")
		}
		return nil
	})
}

// cliResult is one run of the raftkv CLI.
type cliResult struct {
	stdout, stderr string
	code           int
}

// runCLI runs the built binary with args and returns its output and exit code.
func runCLI(t *testing.T, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, raftkvBinary(t), args...)
	cmd.Env = cleanEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := cliResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	default:
		t.Fatalf("run raftkv %v: %v", args, err)
	}
	t.Logf("raftkv %s -> exit %d, stdout %q, stderr %q", strings.Join(args, " "), res.code, res.stdout, res.stderr)
	return res
}

// cleanEnv is the environment without RAFTKV_* variables, so a developer's
// shell cannot change what the CLI under test does.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RAFTKV_") {
			env = append(env, kv)
		}
	}
	return env
}

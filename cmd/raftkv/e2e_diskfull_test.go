package main

// End-to-end test of the disk-space guard (cluster/diskspace.go) with real
// raftkv processes whose data dirs sit on small tmpfs filesystems, one per
// node, filled with a filler file: writes are refused with 507 once a
// quorum of voters, then the leader itself, is below --min-free-disk;
// reads of every kind go on; writes resume by themselves once the fillers
// are deleted, and no acknowledged write is lost. Needs root (mount); CI
// runs as root.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/httpapi/wire"
)

const (
	diskfullTmpfsSize = "64m"
	diskfullReserve   = 32 << 20
)

// mountTmpfs mounts a tmpfs of size at a new directory under base and
// unmounts it in t.Cleanup (registered before the cluster's own cleanup, so
// it runs after the nodes have stopped). It skips the test when not root or
// when mounting is not permitted.
func mountTmpfs(t *testing.T, base, name, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts tmpfs filesystems for the nodes' data dirs (CI runs as root)")
	}
	dir := filepath.Join(base, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("create mount point: %v", err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput()
	if err != nil {
		if bytes.Contains(bytes.ToLower(out), []byte("permission denied")) || bytes.Contains(out, []byte("not permitted")) {
			t.Skipf("mount tmpfs not permitted here (root without CAP_SYS_ADMIN?): %s", strings.TrimSpace(string(out)))
		}
		t.Fatalf("mount -t tmpfs -o size=%s tmpfs %s: %v: %s", size, dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Logf("umount %s: %v: %s; detaching it lazily", dir, err, out)
			if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
				t.Errorf("umount -l %s: %v: %s", dir, err, out)
			}
		}
	})
	return dir
}

// startClusterOn is startClusterWith with the nodes' data dirs given:
// dataDirs[i] is node n<i+1>'s. Logs go to a temp dir off those disks.
func startClusterOn(t *testing.T, dataDirs []string, flags ...string) *e2eCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: starts raftkv processes; skipped with -short")
	}
	bin := raftkvBinary(t)
	logDir := t.TempDir()
	c := &e2eCluster{t: t}
	ports := freePorts(t, 2*len(dataDirs))
	for i, dd := range dataDirs {
		id := fmt.Sprintf("n%d", i+1)
		c.nodes = append(c.nodes, &e2eNode{id: id, dataDir: dd, httpAddr: ports[2*i], raftAddr: ports[2*i+1],
			logPath: filepath.Join(logDir, id+".log"), bin: bin, flags: flags})
	}
	stopAndDumpOnCleanup(t, func() []*e2eNode { return c.nodes })
	c.bootstrapAndJoin(t, 30*time.Second)
	return c
}

// freeBytes is the space available on dir's filesystem.
func freeBytes(t *testing.T, dir string) uint64 {
	t.Helper()
	var s syscall.Statfs_t
	if err := syscall.Statfs(dir, &s); err != nil {
		t.Fatalf("statfs %s: %v", dir, err)
	}
	return s.Bavail * uint64(s.Bsize)
}

// fill writes a filler file on dir's filesystem until less than leave bytes
// are free, and returns its path.
func fill(t *testing.T, dir string, leave uint64) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("create filler: %v", err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for freeBytes(t, dir) >= leave {
		if _, err := f.Write(chunk); err != nil {
			t.Fatalf("write filler on %s (%d bytes free): %v", dir, freeBytes(t, dir), err)
		}
	}
	return path
}

// rawPut writes key through n with a plain HTTP request and returns the
// status, the outcome header and the decoded JSON error body (if any).
func rawPut(n *e2eNode, key, value string) (status int, outcome string, body wire.Error, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+n.httpAddr+"/v1/kv/"+key, strings.NewReader(value))
	if err != nil {
		return 0, "", body, fmt.Errorf("build request: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", body, fmt.Errorf("PUT %s via %s: %w", key, n.id, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, "", body, fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		if err := json.Unmarshal(data, &body); err != nil {
			return resp.StatusCode, "", body, fmt.Errorf("error body %q is not JSON: %w", data, err)
		}
	}
	return resp.StatusCode, resp.Header.Get(wire.HeaderOutcome), body, nil
}

// expectRefused fails unless a write through n is answered 507, outcome
// failed, with a JSON error matching re.
func expectRefused(t *testing.T, n *e2eNode, key string, re *regexp.Regexp) string {
	t.Helper()
	status, outcome, body, err := rawPut(n, key, "x")
	if err != nil {
		t.Fatalf("write through %s: %v", n.id, err)
	}
	if status != http.StatusInsufficientStorage || outcome != wire.OutcomeFailed || body.Outcome != wire.OutcomeFailed || !re.MatchString(body.Error) {
		t.Errorf("write through %s: %d outcome %q body %+v; want 507, outcome failed, error matching %s", n.id, status, outcome, body, re)
	}
	return body.Error
}

func TestDiskFullRefusesWritesKeepsReads(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: starts raftkv processes; skipped with -short")
	}
	base := t.TempDir()
	var mounts, dataDirs []string
	for i := 1; i <= 3; i++ {
		m := mountTmpfs(t, base, fmt.Sprintf("disk%d", i), diskfullTmpfsSize)
		mounts = append(mounts, m)
		dataDirs = append(dataDirs, filepath.Join(m, "data"))
	}
	c := startClusterOn(t, dataDirs, "--min-free-disk", "32MB", "--server-stabilization-time", "1s")
	ctx := context.Background()
	mountOf := map[*e2eNode]string{}
	for i, n := range c.nodes {
		mountOf[n] = mounts[i]
	}

	before := numbered("before", 50)
	putAll(t, c.nodes, before, 4, 20*time.Second)
	w := startWriter(t, "full", c.nodes)
	leader := c.leader(t, c.nodes, 5*time.Second)
	f1, f2 := c.others(leader)[0], c.others(leader)[1]
	leave := uint64(diskfullReserve - 4<<20) // 4MB under the reserve

	waitLow := func(n *e2eNode) {
		t.Helper()
		waitFor(t, 5*time.Second, n.id+" to report DiskLow", func() error {
			st, err := nodeStatus(n)
			if err != nil {
				return err
			}
			if !st.DiskLow || st.DiskFreeBytes >= diskfullReserve || st.DiskReserveBytes != diskfullReserve {
				return fmt.Errorf("%s: DiskLow %t, free %d, reserve %d", n.id, st.DiskLow, st.DiskFreeBytes, st.DiskReserveBytes)
			}
			return nil
		})
	}

	// One follower low: a minority; writes go on.
	fillers := []string{fill(t, mountOf[f1], leave)}
	waitLow(f1)
	put(t, leader, "minority/low", "ok", 5*time.Second)
	t.Logf("%s below the reserve (a minority): writes still accepted", f1.id)

	// Both followers low: a quorum of voters; the leader refuses.
	fillers = append(fillers, fill(t, mountOf[f2], leave))
	waitLow(f2)
	quorumRe := regexp.MustCompile(`^disk full on a quorum of voters \(n\d: \d+MB free, below the 32MB reserve; n\d: \d+MB free, below the 32MB reserve\); writes refused until space is freed$`)
	waitFor(t, 5*time.Second, "the leader to refuse writes for a quorum of low voters", func() error {
		if _, err := rawPutExpect(leader, http.StatusInsufficientStorage); err != nil {
			return err
		}
		return nil
	})
	msg := expectRefused(t, leader, "quorum/via-leader", quorumRe)
	expectRefused(t, f1, "quorum/via-follower", quorumRe)
	t.Logf("quorum low -> 507 through leader and follower: %q", msg)

	// The leader low too: its own check answers first.
	fillers = append(fillers, fill(t, mountOf[leader], leave))
	waitLow(leader)
	selfRe := regexp.MustCompile(`^disk full on node ` + leader.id + `: \d+MB free, below the 32MB reserve; writes refused until space is freed$`)
	waitFor(t, 5*time.Second, "the leader's own low-disk refusal", func() error {
		_, _, body, err := rawPut(leader, "self/probe", "x")
		if err != nil {
			return err
		}
		if !selfRe.MatchString(body.Error) {
			return fmt.Errorf("error %q", body.Error)
		}
		return nil
	})
	lst, err := nodeStatus(leader)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range c.nodes {
		msg = expectRefused(t, n, fmt.Sprintf("self/%d", i), selfRe)
	}
	t.Logf("leader low -> 507 through every node: %q", msg)
	// Refused writes were never proposed: the leader's log does not grow.
	for i := range 20 {
		expectRefused(t, c.nodes[i%3], fmt.Sprintf("self/burst/%d", i), selfRe)
	}
	if st, err := nodeStatus(leader); err != nil {
		t.Fatal(err)
	} else if st.LastIndex != lst.LastIndex {
		t.Errorf("leader's last index %d -> %d across refused writes, want unchanged (nothing proposed)", lst.LastIndex, st.LastIndex)
	}
	// Through the Go client and the CLI: a clear error, non-zero exit.
	if _, _, err := f2.client(5*time.Second).Put(ctx, "client/k", []byte("v"), client.PutOptions{}); err == nil {
		t.Error("client put on a full cluster succeeded")
	} else if ce := (*client.Error)(nil); !errors.As(err, &ce) || ce.Status != http.StatusInsufficientStorage || ce.Outcome != wire.OutcomeFailed {
		t.Errorf("client put on a full cluster: %v, want a 507 *client.Error with outcome failed", err)
	}
	if res := runCLI(t, "--http-addr", f1.httpAddr, "kv", "put", "cli/k", "v"); res.code == 0 || !strings.Contains(res.stderr, "disk full on node "+leader.id) {
		t.Errorf("raftkv kv put on a full cluster: exit %d, stderr %q; want non-zero and the disk-full message", res.code, res.stderr)
	}

	// Reads of every kind still work on every node.
	r := testRand(t)
	for _, n := range c.nodes {
		for _, mode := range []client.Consistency{client.Default, client.Consistent, client.Stale} {
			for k, v := range sample(r, before, 5) {
				p, err := n.client(5*time.Second).Get(ctx, k, mode)
				if err != nil || string(p.Value) != v {
					t.Errorf("get %s on %s (mode %q) with the disks full: %q, %v; want %q", k, n.id, mode, p.Value, err, v)
				}
			}
		}
		checkReadyAndMetrics(t, n)
	}

	// Free the space: writes resume by themselves.
	t0 := time.Now()
	for _, f := range fillers {
		if err := os.Remove(f); err != nil {
			t.Fatalf("remove filler: %v", err)
		}
	}
	for _, n := range c.nodes {
		put(t, n, "after/"+n.id, "ok", 10*time.Second)
	}
	t.Logf("fillers deleted -> writes accepted through every node after %s", ms(time.Since(t0)))
	for _, n := range c.nodes {
		if st, err := nodeStatus(n); err != nil || st.DiskLow {
			t.Errorf("%s after the fillers were deleted: DiskLow %t (err %v), want false", n.id, st.DiskLow, err)
		}
	}

	waitFor(t, 5*time.Second, "the steady writer to resume", func() error {
		if n := w.successesAfter(t0); n < 10 {
			return fmt.Errorf("%d writes acknowledged since space was freed", n)
		}
		return nil
	})
	w.stop()
	leader = c.leader(t, c.nodes, 5*time.Second)
	checkAcked(t, w, leader)
	checkStale(t, leader, before, 5*time.Second)
	for _, n := range c.others(leader) {
		waitSameDigest(t, n, leader, 10*time.Second)
	}
}

// rawPutExpect writes a probe key through n and reports an error unless the
// answer has status want.
func rawPutExpect(n *e2eNode, want int) (wire.Error, error) {
	status, _, body, err := rawPut(n, "probe/k", "x")
	if err != nil {
		return body, err
	}
	if status != want {
		return body, fmt.Errorf("write through %s: %d %q, want %d", n.id, status, body.Error, want)
	}
	return body, nil
}

// checkReadyAndMetrics: a low node stays ready (200) with disk_low in the
// body, and exports its free space and low state.
func checkReadyAndMetrics(t *testing.T, n *e2eNode) {
	t.Helper()
	resp, err := http.Get("http://" + n.httpAddr + "/v1/ready")
	if err != nil {
		t.Fatalf("GET /v1/ready on %s: %v", n.id, err)
	}
	var body map[string]any
	err = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || body["disk_low"] != true || body["writes"] == nil {
		t.Errorf("GET /v1/ready on %s with a full disk: %d %v (err %v); want 200 with disk_low true and writes refused", n.id, resp.StatusCode, body, err)
	}
	resp, err = http.Get("http://" + n.httpAddr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics on %s: %v", n.id, err)
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("read /metrics on %s: %v", n.id, err)
	}
	if !bytes.Contains(data, []byte("\nraftkv_disk_low 1\n")) || !regexp.MustCompile(`\nraftkv_disk_free_bytes \d`).Match(data) {
		t.Errorf("/metrics on %s: want raftkv_disk_low 1 and raftkv_disk_free_bytes", n.id)
	}
}

package main

// End-to-end abuse tests: a real 3-node cluster of raftkv processes gets
// hostile or broken input (oversized and endless bodies, oversized headers,
// slowloris connections, 50k keys under one prefix, keys that try to be
// paths, malformed JSON, joins that would take a member's place). Each case
// must get a clear error, and the store must keep serving: after each case a
// canary write and a linearizable read succeed, and at the end every write
// acknowledged during the test is still there on every node.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/httpapi/wire"
)

// hostile is the shared state of TestEndToEndHostile: the cluster and the
// writes acknowledged so far.
type hostile struct {
	c     *e2eCluster
	mu    sync.Mutex
	acked map[string]string
	round int
}

// ack records an acknowledged write, to be checked at the end.
func (h *hostile) ack(key, value string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.acked[key] = value
}

// canary writes through one node and reads it back linearizably through
// another, rotating over the nodes: the store still serves.
func (h *hostile) canary(t *testing.T, step string) {
	t.Helper()
	h.round++
	w, r := h.c.nodes[h.round%3], h.c.nodes[(h.round+1)%3]
	key, val := "canary/"+step, fmt.Sprintf("after %s via %s", step, w.id)
	put(t, w, key, val, 15*time.Second)
	h.ack(key, val)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, err := r.client(5*time.Second).Get(ctx, key, client.Consistent)
	if err != nil || string(p.Value) != val {
		t.Fatalf("after %s: linearizable read of %s on %s: %q, %v; want %q", step, key, r.id, p.Value, err, val)
	}
}

// rawExchange sends req as written on a new connection to addr and reads
// one response. It returns the response with its body read, and the
// connection (closed by the caller).
func rawExchange(t *testing.T, addr, req string) (*http.Response, []byte, net.Conn) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		conn.Close()
		t.Fatalf("write request: %v", err)
	}
	resp, body := readRawResponse(t, conn)
	return resp, body, conn
}

func readRawResponse(t *testing.T, conn net.Conn) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("read response body: %v", err)
	}
	return resp, body
}

// wantJSONError checks a raftkv error answer: the status and a JSON body
// {"error": ..., "outcome": "failed"} whose message contains want.
func wantJSONError(t *testing.T, what string, status int, body []byte, wantStatus int, want string) {
	t.Helper()
	var e wire.Error
	if err := json.Unmarshal(body, &e); err != nil {
		t.Errorf("%s: status %d, body %q is not a JSON error: %v", what, status, body, err)
		return
	}
	if status != wantStatus || e.Outcome != wire.OutcomeFailed || !strings.Contains(e.Error, want) {
		t.Errorf("%s: status %d, error %q, outcome %q; want %d, an error containing %q, outcome failed",
			what, status, e.Error, e.Outcome, wantStatus, want)
	}
}

// doHTTP sends one request with the standard client and returns the status
// and body.
func doHTTP(t *testing.T, method, url, body string) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp.StatusCode, b
}

// waitClosedByPeer waits until the server closes conn (EOF or reset) or
// the deadline passes; it reports whether it was closed.
func waitClosedByPeer(conn net.Conn, deadline time.Time) bool {
	buf := make([]byte, 512)
	_ = conn.SetReadDeadline(deadline)
	for {
		_, err := conn.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}
}

// pid is the process id of the running node.
func (n *e2eNode) pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd.Process.Pid
}

// vmHWM returns the peak resident set size of process pid in bytes
// (Linux), or 0 when it cannot be read.
func vmHWM(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func TestEndToEndHostile(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: starts raftkv processes; skipped with -short")
	}
	start := time.Now()
	h := &hostile{c: startCluster(t, 3), acked: map[string]string{}}
	c := h.c
	leader := c.leader(t, c.nodes, 10*time.Second)
	follower := c.others(leader)[0]
	t.Logf("cluster up in %s; leader %s", time.Since(start).Round(time.Millisecond), leader.id)
	ctx := context.Background()

	// Acknowledged writes made before the abuse: they must survive it.
	for i := range 30 {
		key, val := fmt.Sprintf("before/%02d", i), fmt.Sprintf("v%d", i)
		put(t, c.nodes[i%3], key, val, 10*time.Second)
		h.ack(key, val)
	}

	steps := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"OversizedValue", func(t *testing.T) {
			const limit = 512 << 10
			for _, n := range []*e2eNode{leader, follower} {
				url := "http://" + n.httpAddr + "/v1/kv/hostile/big"
				status, body := doHTTP(t, http.MethodPut, url, strings.Repeat("x", limit+1))
				wantJSONError(t, "value of 512 KiB + 1 via "+n.id, status, body, http.StatusRequestEntityTooLarge, "512 KiB")
			}
			// At the limit is fine.
			ok, _, err := follower.client(10*time.Second).Put(ctx, "hostile/at-limit", bytes.Repeat([]byte("y"), limit), client.PutOptions{})
			if err != nil || !ok {
				t.Fatalf("value of exactly 512 KiB: ok %t, %v", ok, err)
			}
			h.ack("hostile/at-limit", strings.Repeat("y", limit))
		}},

		{"HugeContentLength", func(t *testing.T) {
			// Claims 10 GiB, sends 1 KiB, then waits: refused at once, from
			// the header, without waiting for the body (ReadTimeout is 30s).
			for _, tc := range []struct{ path, want string }{
				{"/v1/kv/hostile/huge", "512 KiB"},
				{"/v1/cluster/join", "too large"},
			} {
				t0 := time.Now()
				resp, body, conn := rawExchange(t, leader.httpAddr, "PUT "+tc.path+" HTTP/1.1\r\nHost: raftkv\r\n"+
					"Content-Length: 10737418240\r\n\r\n"+strings.Repeat("z", 1024))
				wantJSONError(t, "PUT "+tc.path+" claiming 10 GiB", resp.StatusCode, body, http.StatusRequestEntityTooLarge, tc.want)
				if d := time.Since(t0); d > 5*time.Second {
					t.Errorf("PUT %s claiming 10 GiB: answered after %s, want at once", tc.path, d)
				}
				// The rest of the body is never read: the server drops the connection.
				if !waitClosedByPeer(conn, time.Now().Add(10*time.Second)) {
					t.Errorf("PUT %s claiming 10 GiB: connection still open 10s after the answer", tc.path)
				}
				conn.Close()
			}
		}},

		{"EndlessBody", func(t *testing.T) {
			// A chunked body that never ends: each endpoint reads up to its
			// limit, answers 413 and drops the connection.
			for _, tc := range []struct{ method, path, want string }{
				{"PUT", "/v1/kv/hostile/endless", "512 KiB"},
				{"POST", "/v1/cluster/join", "too large"},
				{"PUT", "/v1/txn", "1 MiB"},
			} {
				conn, err := net.DialTimeout("tcp", follower.httpAddr, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
				if _, err := fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: raftkv\r\nTransfer-Encoding: chunked\r\n\r\n", tc.method, tc.path); err != nil {
					t.Fatal(err)
				}
				chunk := []byte(fmt.Sprintf("%x\r\n%s\r\n", 64<<10, bytes.Repeat([]byte("["), 64<<10)))
				var wg sync.WaitGroup
				var sent int64
				wg.Go(func() { // stops when the server closes the connection or conn.Close below
					for {
						if _, err := conn.Write(chunk); err != nil {
							return
						}
						sent += 64 << 10
					}
				})
				resp, body := readRawResponse(t, conn)
				conn.Close()
				wg.Wait()
				wantJSONError(t, tc.method+" "+tc.path+" with an endless body", resp.StatusCode, body, http.StatusRequestEntityTooLarge, tc.want)
				t.Logf("%s %s: 413 after the client had sent %d KiB", tc.method, tc.path, sent>>10)
			}
		}},

		{"HeadersOverLimit", func(t *testing.T) {
			// MaxHeaderBytes is 64 KiB: net/http answers 431 itself (text,
			// not JSON: no handler runs) and closes the connection.
			resp, body, conn := rawExchange(t, leader.httpAddr, "GET /v1/kv/hostile/x HTTP/1.1\r\nHost: raftkv\r\n"+
				"X-Padding: "+strings.Repeat("p", 100<<10)+"\r\n\r\n")
			conn.Close()
			if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
				t.Errorf("100 KiB of headers: status %d (%q), want 431", resp.StatusCode, body)
			}
		}},

		{"Slowloris", func(t *testing.T) {
			// 200 connections that never finish their headers: 100 trickle a
			// byte a second, 100 stop after a partial request line. The server
			// closes each within ReadHeaderTimeout (5s), and answers normal
			// clients meanwhile.
			const conns = 200
			const readHeaderTimeout = 5 * time.Second
			t0 := time.Now()
			closedAfter := make([]time.Duration, conns)
			var wg sync.WaitGroup
			for i := range conns {
				conn, err := net.DialTimeout("tcp", leader.httpAddr, 5*time.Second)
				if err != nil {
					t.Fatalf("slow connection %d: %v", i, err)
				}
				defer conn.Close()
				trickle := i%2 == 0
				start := "GET /v1/kv/slow HTTP/1.1\r\nHost: raftkv\r\nX-Slow: "
				if !trickle {
					start = "GET /v1/kv/sl"
				}
				if _, err := io.WriteString(conn, start); err != nil {
					t.Fatalf("slow connection %d: %v", i, err)
				}
				wg.Go(func() { // ends when the server closes conn, or after 20s
					deadline := t0.Add(20 * time.Second)
					buf := make([]byte, 64)
					for time.Now().Before(deadline) {
						_ = conn.SetReadDeadline(time.Now().Add(time.Second))
						_, err := conn.Read(buf)
						var ne net.Error
						if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
							closedAfter[i] = time.Since(t0)
							return
						}
						if trickle {
							if _, err := conn.Write([]byte("a")); err != nil {
								closedAfter[i] = time.Since(t0)
								return
							}
						}
					}
				})
			}
			// Normal clients are served while the slow connections hang on.
			var worst time.Duration
			for i := 0; time.Since(t0) < readHeaderTimeout-time.Second; i++ {
				t1 := time.Now()
				key, val := fmt.Sprintf("during-slowloris/%03d", i), "ok"
				ok, _, err := leader.client(5*time.Second).Put(ctx, key, []byte(val), client.PutOptions{})
				if err != nil || !ok {
					t.Fatalf("write %d during the slowloris: ok %t, %v", i, ok, err)
				}
				h.ack(key, val)
				if _, err := leader.client(5*time.Second).Get(ctx, key, client.Default); err != nil {
					t.Fatalf("read %d during the slowloris: %v", i, err)
				}
				worst = max(worst, time.Since(t1))
			}
			t.Logf("normal clients during the slowloris: slowest write+read %s", worst.Round(time.Millisecond))
			if worst > 2*time.Second {
				t.Errorf("a write+read took %s during the slowloris, want under 2s", worst)
			}
			wg.Wait()
			var open int
			var last time.Duration
			for _, d := range closedAfter {
				if d == 0 {
					open++
				}
				last = max(last, d)
			}
			t.Logf("slow connections closed by the server: %d of %d, the last after %s", conns-open, conns, last.Round(time.Millisecond))
			if open > 0 {
				t.Errorf("%d slow connections still open after 20s, want every one closed by the server", open)
			}
			if last > readHeaderTimeout+5*time.Second {
				t.Errorf("last slow connection closed after %s, want within ReadHeaderTimeout %s (+5s slack)", last, readHeaderTimeout)
			}
		}},

		{"HugeKeyList", func(t *testing.T) {
			// 50k keys under one prefix, written as 64-operation transactions
			// by 12 concurrent clients spread over the nodes.
			const total, perTxn, workers = 50000, 64, 12
			t0 := time.Now()
			var wg sync.WaitGroup
			errs := make(chan error, workers)
			for w := range workers {
				wg.Go(func() {
					cl := c.nodes[w%3].client(10 * time.Second)
					for first := w * perTxn; first < total; first += workers * perTxn {
						var ops []wire.TxnKVOp
						for i := first; i < min(first+perTxn, total); i++ {
							ops = append(ops, wire.TxnKVOp{Verb: "set", Key: fmt.Sprintf("bulk/%05d", i), Value: []byte(strconv.Itoa(i))})
						}
						// Sets are idempotent: retry through elections (the load
						// can cost the leader its lease on a small host).
						var err error
						for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
							if _, err = cl.Txn(ctx, ops); err == nil {
								break
							}
							time.Sleep(50 * time.Millisecond) // retry pacing, not a condition stand-in
						}
						if err != nil {
							errs <- fmt.Errorf("txn of bulk/%05d..: %w", first, err)
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			t.Logf("wrote %d keys in %s", total, time.Since(t0).Round(time.Millisecond))

			for _, n := range []*e2eNode{leader, follower} {
				before := vmHWM(n.pid())
				t1 := time.Now()
				keys, err := n.client(30*time.Second).Keys(ctx, "bulk/", "", client.Default)
				if err != nil || len(keys) != total || keys[0] != "bulk/00000" || keys[total-1] != fmt.Sprintf("bulk/%05d", total-1) {
					t.Fatalf("?keys on %s: %d keys (%v), want %d", n.id, len(keys), err, total)
				}
				dk := time.Since(t1)
				t1 = time.Now()
				pairs, err := n.client(30*time.Second).List(ctx, "bulk/", client.Default)
				if err != nil || len(pairs) != total || string(pairs[12345].Value) != "12345" {
					t.Fatalf("?recurse on %s: %d entries (%v), want %d", n.id, len(pairs), err, total)
				}
				dr := time.Since(t1)
				folded, err := n.client(10*time.Second).Keys(ctx, "", "/", client.Default)
				if err != nil || !slices.Contains(folded, "bulk/") {
					t.Fatalf("?keys&separator=/ on %s: %v, %v; want bulk/ among them", n.id, folded, err)
				}
				after := vmHWM(n.pid())
				t.Logf("%s: ?keys %s, ?recurse %s; peak RSS %d MiB before, %d MiB after", n.id, dk.Round(time.Millisecond), dr.Round(time.Millisecond), before>>20, after>>20)
				if after > 512<<20 {
					t.Errorf("%s: peak RSS %d MiB after listing 50k keys, want under 512 MiB", n.id, after>>20)
				}
			}
		}},

		{"HostileKeys", func(t *testing.T) {
			get := func(path string) (int, []byte) {
				resp, body, conn := rawExchange(t, follower.httpAddr, "GET "+path+" HTTP/1.1\r\nHost: raftkv\r\nConnection: close\r\n\r\n")
				conn.Close()
				return resp.StatusCode, body
			}
			putRaw := func(path, value string) (int, []byte) {
				resp, body, conn := rawExchange(t, leader.httpAddr, fmt.Sprintf("PUT %s HTTP/1.1\r\nHost: raftkv\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", path, len(value), value))
				conn.Close()
				return resp.StatusCode, body
			}
			// Stored and read back byte for byte, under exactly the key the
			// escaped path spells (no cleaning, no redirects).
			for _, tc := range []struct{ path, key string }{
				{"/v1/kv/nul%00byte", "nul\x00byte"},
				{"/v1/kv/a/../b", "a/../b"},
				{"/v1/kv/a//b", "a//b"},
				{"/v1/kv//leading", "/leading"},
				{"/v1/kv/%2e%2e", ".."},
				{"/v1/kv/x/%2E%2E/y", "x/../y"},
				{"/v1/kv/sp%20ace%2Fslash", "sp ace/slash"},
				{"/v1/kv/" + strings.Repeat("k", 1024), strings.Repeat("k", 1024)},
			} {
				val := "value of " + strconv.Quote(tc.key)
				if status, body := putRaw(tc.path, val); status != http.StatusOK || string(body) != "true\n" {
					t.Errorf("PUT %.60s: %d %q, want 200 true", tc.path, status, body)
					continue
				}
				h.ack(tc.key, val)
				status, body := get(tc.path)
				var pairs []wire.KVPair
				if err := json.Unmarshal(body, &pairs); status != http.StatusOK || err != nil || len(pairs) != 1 ||
					pairs[0].Key != tc.key || string(pairs[0].Value) != val {
					t.Errorf("GET %.60s: %d %.200q, want the entry with key %q", tc.path, status, body, tc.key)
				}
				if status, body := get(tc.path + "?raw"); status != http.StatusOK || string(body) != val {
					t.Errorf("GET %.60s?raw: %d %q, want %q", tc.path, status, body, val)
				}
			}
			// Refused with a 400 and a JSON error.
			for _, tc := range []struct{ path, want string }{
				{"/v1/kv/bad%ffutf8", "not valid UTF-8"},
				{"/v1/kv/%c0%af", "not valid UTF-8"},
				{"/v1/kv/" + strings.Repeat("k", 1025), "over the 1024-byte limit"},
			} {
				status, body := putRaw(tc.path, "v")
				wantJSONError(t, fmt.Sprintf("PUT %.60s", tc.path), status, body, http.StatusBadRequest, tc.want)
			}
			// A malformed escape never reaches raftkv: net/http refuses the
			// request line with its own plain-text 400.
			if status, body := putRaw("/v1/kv/bad%zzescape", "v"); status != http.StatusBadRequest {
				t.Errorf("PUT /v1/kv/bad%%zzescape: %d %q, want 400", status, body)
			}
			// Path tricks stay in the KV namespace: a dot-dot key is a key, and
			// the route it spells is untouched.
			if status, body := putRaw("/v1/kv/../status/leader", "trap"); status != http.StatusOK || string(body) != "true\n" {
				t.Errorf("PUT /v1/kv/../status/leader: %d %q, want 200 true (a key)", status, body)
			}
			h.ack("../status/leader", "trap")
			if status, body := get("/v1/kv/%2e%2e/status/leader?raw"); status != http.StatusOK || string(body) != "trap" {
				t.Errorf("GET /v1/kv/%%2e%%2e/status/leader?raw: %d %q, want the key written through /v1/kv/../status/leader", status, body)
			}
			// The real route still answers with a node's Raft address.
			status, body := get("/v1/status/leader")
			var addr string
			if err := json.Unmarshal(body, &addr); status != http.StatusOK || err != nil ||
				!slices.ContainsFunc(c.nodes, func(n *e2eNode) bool { return n.raftAddr == addr }) {
				t.Errorf("GET /v1/status/leader: %d %q, want a node's Raft address", status, body)
			}
			for _, path := range []string{"/v1/kv/..%2f..%2fv1%2fstatus%2fpeers", "/v1/kv/%2e%2e%2fstatus%2fpeers"} {
				if status, body := get(path); status != http.StatusNotFound || len(body) != 0 {
					t.Errorf("GET %s: %d %q, want the empty 404 of a missing key", path, status, body)
				}
			}
			status, body = get("/v1/kv%2f..%2fstatus%2fleader")
			wantJSONError(t, "GET /v1/kv%2f..%2fstatus%2fleader", status, body, http.StatusNotFound, "no such endpoint")
		}},

		{"MalformedJSON", func(t *testing.T) {
			for _, n := range []*e2eNode{leader, follower} {
				join := "http://" + n.httpAddr + "/v1/cluster/join"
				for _, tc := range []struct{ body, want string }{
					{`{`, "invalid JSON"},
					{`[]`, "invalid JSON"},
					{`"n9"`, "invalid JSON"},
					{`{"ID":5,"RaftAddr":"127.0.0.1:1"}`, "invalid JSON"},
					{`{"ID":"n9","RaftAddr":["127.0.0.1:1"]}`, "invalid JSON"},
					{`{"ID":"n9","RaftAddr":"127.0.0.1:1"} {"ID":"n10"}`, "invalid JSON"},
					{`{"ID":"n9","RaftAddr":"127.0.0.1:1","Fresh":"yes"}`, "invalid JSON"},
					{`null`, "needs ID and RaftAddr"},
					{`{}`, "needs ID and RaftAddr"},
				} {
					status, body := doHTTP(t, http.MethodPost, join, tc.body)
					wantJSONError(t, "join "+tc.body+" via "+n.id, status, body, http.StatusBadRequest, tc.want)
				}
				txn := "http://" + n.httpAddr + "/v1/txn"
				many := strings.Repeat(`{"KV":{"Verb":"get","Key":"k"}},`, 65)
				for _, tc := range []struct {
					body, want string
					status     int
				}{
					{`{`, "invalid transaction body", 400},
					{`{}`, "invalid transaction body", 400},
					{`[]`, "empty transaction", 400},
					{`[{}]`, `missing "KV"`, 400},
					{`[{"KV":{"Verb":"set","Key":5}}]`, "invalid transaction body", 400},
					{`[{"KV":{"Verb":"set","Key":"k","Value":"not base64!"}}]`, "invalid transaction body", 400},
					{`[{"KV":{"Verb":"explode","Key":"k"}}]`, "unknown verb", 400},
					{`[{"KV":{"Verb":"set","Key":""}}]`, "operation 0", 400},
					{`[{"KV":{"Verb":"get","Key":"k"}}] trailing`, "data after the JSON array", 400},
					{"[" + strings.TrimSuffix(many, ",") + "]", "the limit is 64", 413},
				} {
					status, body := doHTTP(t, http.MethodPut, txn, tc.body)
					wantJSONError(t, fmt.Sprintf("txn %.50s via %s", tc.body, n.id), status, body, tc.status, tc.want)
				}
			}
		}},

		{"JoinAbuse", func(t *testing.T) {
			config := func() string {
				rc, err := leader.client(5 * time.Second).Configuration(ctx)
				if err != nil {
					t.Fatal(err)
				}
				var s []string
				for _, srv := range rc.Servers {
					s = append(s, fmt.Sprintf("%s@%s voter=%t", srv.ID, srv.Address, srv.Voter))
				}
				slices.Sort(s)
				return strings.Join(s, " ")
			}
			// Leadership may have moved under the earlier load: the conflicts
			// below are checked by text that holds whoever leads.
			leader := c.leader(t, c.nodes, 10*time.Second)
			follower := c.others(leader)[0]
			before := config()
			victim := c.others(leader)[1]
			const conflict = "conflicts with a live member"
			unused := freePort(t)
			for _, n := range []*e2eNode{follower, leader} {
				for _, tc := range []struct {
					req  wire.JoinRequest
					want string
				}{
					{wire.JoinRequest{ID: victim.id, RaftAddr: unused}, conflict},
					{wire.JoinRequest{ID: victim.id, RaftAddr: unused, Fresh: true}, conflict},
					{wire.JoinRequest{ID: "intruder", RaftAddr: victim.raftAddr}, conflict},
					{wire.JoinRequest{ID: "intruder", RaftAddr: leader.raftAddr}, conflict},
					{wire.JoinRequest{ID: leader.id, RaftAddr: unused}, conflict},
					{wire.JoinRequest{ID: "", RaftAddr: unused}, "needs ID and RaftAddr"},
					{wire.JoinRequest{ID: "intruder", RaftAddr: "garbage"}, "want host:port"},
					{wire.JoinRequest{ID: "intruder", RaftAddr: "0.0.0.0:8300"}, "not an address peers can dial"},
					{wire.JoinRequest{ID: "intruder", RaftAddr: "127.0.0.1:0"}, "want 1..65535"},
					{wire.JoinRequest{ID: "in truder\n", RaftAddr: unused}, "control or invalid characters"},
					{wire.JoinRequest{ID: strings.Repeat("i", 200), RaftAddr: unused}, "over the 128-byte limit"},
					{wire.JoinRequest{ID: "intruder", RaftAddr: unused, HTTPAddr: "not an address"}, "http address"},
				} {
					b, _ := json.Marshal(tc.req)
					status, body := doHTTP(t, http.MethodPost, "http://"+n.httpAddr+"/v1/cluster/join", string(b))
					wantJSONError(t, fmt.Sprintf("join %.80s via %s", b, n.id), status, body, http.StatusBadRequest, tc.want)
				}
			}
			if after := config(); after != before {
				t.Fatalf("refused joins changed the configuration:\n got %s\nwant %s", after, before)
			}
			// A member joining again as it is: accepted, nothing changes.
			b, _ := json.Marshal(wire.JoinRequest{ID: victim.id, RaftAddr: victim.raftAddr, HTTPAddr: victim.httpAddr})
			if status, body := doHTTP(t, http.MethodPost, "http://"+follower.httpAddr+"/v1/cluster/join", string(b)); status != http.StatusOK {
				t.Errorf("repeated join of %s: %d %q, want 200", victim.id, status, body)
			}
			if after := config(); after != before {
				t.Fatalf("a repeated join changed the configuration:\n got %s\nwant %s", after, before)
			}
		}},
	}
	for _, s := range steps {
		t0 := time.Now()
		t.Run(s.name, s.fn)
		t.Run(s.name+"/StillServing", func(t *testing.T) { h.canary(t, s.name) })
		t.Logf("%s: %s", s.name, time.Since(t0).Round(time.Millisecond))
	}

	// Every acknowledged write is still there, on every node, and the nodes
	// agree.
	c.waitVoters(t, c.nodes, 15*time.Second)
	for _, n := range c.nodes {
		var missing []string
		for key, want := range h.acked {
			p, err := n.client(5*time.Second).Get(ctx, key, client.Consistent)
			if err != nil || string(p.Value) != want {
				missing = append(missing, fmt.Sprintf("%q (%v)", key, err))
			}
		}
		if len(missing) > 0 {
			t.Errorf("%s: %d of %d acknowledged writes missing or wrong: %v", n.id, len(missing), len(h.acked), missing)
		}
	}
	waitFor(t, 15*time.Second, "identical digests on every node", func() error {
		var ds []wire.Digest
		for _, n := range c.nodes {
			d, err := n.client(2 * time.Second).Digest(ctx)
			if err != nil {
				return err
			}
			ds = append(ds, d)
		}
		if ds[0] != ds[1] || ds[0] != ds[2] {
			return fmt.Errorf("digests differ: %+v", ds)
		}
		return nil
	})
	t.Logf("%d acknowledged writes checked on every node; total %s", len(h.acked), time.Since(start).Round(time.Millisecond))
}

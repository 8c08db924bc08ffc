package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/httpapi/wire"
	"github.com/raftkv/raftkv/internal/testcluster"
)

var httpc = &http.Client{Timeout: 10 * time.Second}

func do(t *testing.T, method, url string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := httpc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestWritesThroughAnyNodeReadsEverywhere(t *testing.T) {
	c := testcluster.Start(t, 3)
	for i, nd := range c.Nodes {
		resp, body := do(t, http.MethodPut, fmt.Sprintf("%s/v1/kv/k%d", nd.URL(), i), []byte(fmt.Sprintf("v%d", i)))
		if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "true" {
			t.Fatalf("PUT via %s: %d %s", nd.ID, resp.StatusCode, body)
		}
		if resp.Header.Get(wire.HeaderIndex) == "" {
			t.Fatalf("PUT via %s: no %s header", nd.ID, wire.HeaderIndex)
		}
	}
	// Linearizable reads on every node see every write, with no waiting.
	for _, nd := range c.Nodes {
		for i := range c.Nodes {
			resp, body := do(t, http.MethodGet, fmt.Sprintf("%s/v1/kv/k%d?raw", nd.URL(), i), nil)
			if resp.StatusCode != 200 || string(body) != fmt.Sprintf("v%d", i) {
				t.Fatalf("GET k%d on %s: %d %q", i, nd.ID, resp.StatusCode, body)
			}
			if resp.Header.Get(wire.HeaderKnownLeader) != "true" {
				t.Fatalf("GET on %s: %s = %q", nd.ID, wire.HeaderKnownLeader, resp.Header.Get(wire.HeaderKnownLeader))
			}
		}
	}
	resp, body := do(t, http.MethodGet, c.Nodes[1].URL()+"/v1/kv/?recurse", nil)
	var pairs []wire.KVPair
	if err := json.Unmarshal(body, &pairs); err != nil || resp.StatusCode != 200 || len(pairs) != 3 {
		t.Fatalf("recurse: %d %s (%v)", resp.StatusCode, body, err)
	}
	if string(pairs[0].Value) != "v0" || pairs[0].CreateIndex == 0 || pairs[0].ModifyIndex != pairs[0].CreateIndex {
		t.Fatalf("recurse first pair: %+v", pairs[0])
	}
	resp, _ = do(t, http.MethodGet, c.Nodes[2].URL()+"/v1/kv/missing", nil)
	if resp.StatusCode != 404 {
		t.Fatalf("missing key: status %d, want 404", resp.StatusCode)
	}
}

func TestCASRaceThroughAllNodes(t *testing.T) {
	c := testcluster.Start(t, 3)
	resp, _ := do(t, http.MethodPut, c.Nodes[0].URL()+"/v1/kv/race", []byte("0"))
	if resp.StatusCode != 200 {
		t.Fatalf("seed: %d", resp.StatusCode)
	}
	idx := resp.Header.Get(wire.HeaderIndex)
	const workers = 30
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := 0; i < workers; i++ {
		wg.Go(func() {
			nd := c.Nodes[i%len(c.Nodes)]
			resp, body := do(t, http.MethodPut, fmt.Sprintf("%s/v1/kv/race?cas=%s", nd.URL(), idx), []byte(fmt.Sprint(i)))
			if resp.StatusCode != 200 {
				t.Errorf("cas via %s: %d %s", nd.ID, resp.StatusCode, body)
				return
			}
			if strings.TrimSpace(string(body)) == "true" {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("got %d CAS winners, want exactly 1", wins)
	}
	// cas=0 creates only if absent.
	_, body := do(t, http.MethodPut, c.Nodes[1].URL()+"/v1/kv/race?cas=0", []byte("x"))
	if strings.TrimSpace(string(body)) != "false" {
		t.Fatalf("cas=0 on existing key: %s, want false", body)
	}
	_, body = do(t, http.MethodPut, c.Nodes[1].URL()+"/v1/kv/fresh?cas=0", []byte("x"))
	if strings.TrimSpace(string(body)) != "true" {
		t.Fatalf("cas=0 on absent key: %s, want true", body)
	}
}

func TestBadInputGetsClearErrors(t *testing.T) {
	c := testcluster.Start(t, 1)
	u := c.Nodes[0].URL()
	tests := []struct {
		name, method, path string
		body               []byte
		want               int
	}{
		{"value over 512 KiB", http.MethodPut, "/v1/kv/big", bytes.Repeat([]byte("x"), 512*1024+1), 413},
		{"empty key", http.MethodPut, "/v1/kv/", []byte("x"), 400},
		{"over-long key", http.MethodPut, "/v1/kv/" + strings.Repeat("k", 1025), []byte("x"), 400},
		{"bad cas", http.MethodPut, "/v1/kv/a?cas=abc", []byte("x"), 400},
		{"negative flags", http.MethodPut, "/v1/kv/a?flags=-1", []byte("x"), 400},
		{"bad recurse value", http.MethodGet, "/v1/kv/a?recurse=maybe", nil, 400},
		{"raw with recurse", http.MethodGet, "/v1/kv/a?raw&recurse", nil, 400},
		{"sessions unsupported", http.MethodPut, "/v1/kv/a?acquire=abc", []byte("x"), 400},
		{"delete without key", http.MethodDelete, "/v1/kv/", nil, 400},
		{"cas with recurse", http.MethodDelete, "/v1/kv/a?recurse&cas=1", nil, 400},
		{"unknown endpoint", http.MethodGet, "/v1/nope", nil, 404},
		{"method not allowed", http.MethodPost, "/v1/status/leader", nil, 405},
		{"join without id", http.MethodPost, "/v1/cluster/join", []byte(`{"RaftAddr":"x:1"}`), 400},
		{"join bad json", http.MethodPost, "/v1/cluster/join", []byte(`{`), 400},
		{"remove unknown peer", http.MethodDelete, "/v1/operator/raft/peer?id=ghost", nil, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, tt.method, u+tt.path, tt.body)
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tt.want)
			}
			var e wire.Error
			if err := json.Unmarshal(body, &e); err != nil || e.Error == "" || e.Outcome != wire.OutcomeFailed {
				t.Fatalf("body %q: want a JSON error with outcome failed (%v)", body, err)
			}
			if resp.Header.Get(wire.HeaderOutcome) != wire.OutcomeFailed {
				t.Fatalf("header %s = %q", wire.HeaderOutcome, resp.Header.Get(wire.HeaderOutcome))
			}
		})
	}
	// Nothing above changed the store.
	resp, body := do(t, http.MethodGet, u+"/v1/kv/?keys", nil)
	if resp.StatusCode != 404 {
		t.Fatalf("store not empty after bad requests: %d %s", resp.StatusCode, body)
	}
	// Keys with odd bytes are keys, not path tricks.
	for _, k := range []string{"a//b", "a/../b", "sp%20ace", "%2Fslash"} {
		resp, body := do(t, http.MethodPut, u+"/v1/kv/"+k, []byte(k))
		if resp.StatusCode != 200 {
			t.Fatalf("PUT %q: %d %s", k, resp.StatusCode, body)
		}
		resp, body = do(t, http.MethodGet, u+"/v1/kv/"+k+"?raw", nil)
		if resp.StatusCode != 200 || string(body) != k {
			t.Fatalf("GET %q: %d %q", k, resp.StatusCode, body)
		}
	}
}

func TestStatusAndOperatorEndpoints(t *testing.T) {
	c := testcluster.Start(t, 3)
	l := c.WaitLeader(5 * time.Second)
	f := c.Follower()
	_, body := do(t, http.MethodGet, f.URL()+"/v1/status/leader", nil)
	var leader string
	if err := json.Unmarshal(body, &leader); err != nil || leader != l.Node.RaftAddr() {
		t.Fatalf("status/leader = %s, want %q", body, l.Node.RaftAddr())
	}
	// A follower answers from its own copy of the configuration, which
	// learns the last promotion a moment after the leader.
	if err := testcluster.Poll(5*time.Second, func() error {
		_, body := do(t, http.MethodGet, f.URL()+"/v1/status/peers", nil)
		var peers []string
		if err := json.Unmarshal(body, &peers); err != nil || len(peers) != 3 {
			return fmt.Errorf("status/peers = %s (%v)", body, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	_, body = do(t, http.MethodGet, f.URL()+"/v1/status/node", nil)
	var st wire.NodeStatus
	if err := json.Unmarshal(body, &st); err != nil || st.ID != f.ID || st.LeaderID != l.ID || st.State != "Follower" || !st.Voter {
		t.Fatalf("status/node = %s", body)
	}
	// Remove a follower through another follower (forwarded to the leader).
	var other *testcluster.Node
	for _, nd := range c.Nodes {
		if nd != l && nd != f {
			other = nd
		}
	}
	resp, body := do(t, http.MethodDelete, f.URL()+"/v1/operator/raft/peer?id="+other.ID, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("remove peer: %d %s", resp.StatusCode, body)
	}
	_, body = do(t, http.MethodGet, l.URL()+"/v1/operator/raft/configuration", nil)
	var rc wire.RaftConfiguration
	if err := json.Unmarshal(body, &rc); err != nil || len(rc.Servers) != 2 {
		t.Fatalf("configuration after remove = %s", body)
	}
	// Join it back through the follower: idempotent on repeat.
	jr, _ := json.Marshal(wire.JoinRequest{ID: other.ID, RaftAddr: other.Node.RaftAddr(), HTTPAddr: other.HTTPAddr})
	for i := 0; i < 2; i++ {
		resp, body = do(t, http.MethodPost, f.URL()+"/v1/cluster/join", jr)
		if resp.StatusCode != 200 {
			t.Fatalf("join #%d: %d %s", i, resp.StatusCode, body)
		}
	}
	c.WaitVoters(3, 20*time.Second)
}

func TestLeaveOfLeaderHandsOver(t *testing.T) {
	c := testcluster.Start(t, 3)
	l := c.WaitLeader(5 * time.Second)
	resp, body := do(t, http.MethodPost, l.URL()+"/v1/cluster/leave", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("leave leader: %d %s", resp.StatusCode, body)
	}
	if err := testcluster.Poll(10*time.Second, func() error {
		nl := c.Leader()
		if nl == nil || nl == l {
			return fmt.Errorf("leader still %v", nl)
		}
		servers, _, err := nl.Node.Configuration()
		if err != nil {
			return err
		}
		if len(servers) != 2 {
			return fmt.Errorf("%d servers, want 2", len(servers))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Writes go on through a remaining node.
	nl := c.Leader()
	resp, body = do(t, http.MethodPut, nl.URL()+"/v1/kv/after-leave", []byte("x"))
	if resp.StatusCode != 200 {
		t.Fatalf("write after leave: %d %s", resp.StatusCode, body)
	}
}

func TestHealthAndReady(t *testing.T) {
	c := testcluster.Start(t, 3)
	for _, nd := range c.Nodes {
		if resp, body := do(t, http.MethodGet, nd.URL()+"/v1/health", nil); resp.StatusCode != 200 {
			t.Fatalf("%s health: %d %s", nd.ID, resp.StatusCode, body)
		}
		if err := testcluster.Poll(5*time.Second, func() error {
			if resp, body := do(t, http.MethodGet, nd.URL()+"/v1/ready", nil); resp.StatusCode != 200 {
				return fmt.Errorf("%s ready: %d %s", nd.ID, resp.StatusCode, body)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	// Two of three gone: the survivor is alive but not ready (no quorum,
	// hence no leader).
	l := c.WaitLeader(5 * time.Second)
	var survivor *testcluster.Node
	for i, nd := range c.Nodes {
		if nd != l && survivor == nil {
			survivor = nd
			continue
		}
		c.StopNode(i)
	}
	if resp, _ := do(t, http.MethodGet, survivor.URL()+"/v1/health", nil); resp.StatusCode != 200 {
		t.Fatalf("survivor health: %d", resp.StatusCode)
	}
	if err := testcluster.Poll(10*time.Second, func() error {
		if resp, body := do(t, http.MethodGet, survivor.URL()+"/v1/ready", nil); resp.StatusCode != 503 {
			return fmt.Errorf("survivor ready: %d %s, want 503", resp.StatusCode, body)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	c := testcluster.Start(t, 3)
	l := c.WaitLeader(5 * time.Second)
	do(t, http.MethodPut, c.Follower().URL()+"/v1/kv/m", []byte("v"))
	resp, body := do(t, http.MethodGet, l.URL()+"/metrics", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("metrics: %d", resp.StatusCode)
	}
	for _, want := range []string{
		`raftkv_http_requests_total{code="200",method="PUT",route="/v1/kv/"} 1`,
		"raftkv_raft_is_leader 1",
		"raftkv_fsm_keys 1",
		`raftkv_server_healthy{server="` + l.ID + `"} 1`,
		"raftkv_failure_tolerance",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// Profiles are served only with --enable-pprof.
	if resp, _ := do(t, http.MethodGet, l.URL()+"/debug/pprof/heap", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /debug/pprof/heap without Pprof: %d, want 404", resp.StatusCode)
	}
}

// TestBlockingQueries: ?index=N&wait=D holds the answer until a change
// past N, under concurrency, on leader and followers alike.
func TestBlockingQueries(t *testing.T) {
	c := testcluster.Start(t, 3)
	resp, _ := do(t, http.MethodPut, c.Nodes[0].URL()+"/v1/kv/w/a", []byte("0"))
	idx := resp.Header.Get(wire.HeaderIndex)

	// A quiet watch ends at its wait with the same index.
	start := time.Now()
	resp, _ = do(t, http.MethodGet, c.Nodes[1].URL()+"/v1/kv/w/a?index="+idx+"&wait=300ms", nil)
	if resp.StatusCode != 200 || time.Since(start) < 250*time.Millisecond {
		t.Fatalf("quiet watch: %d after %s, want 200 after the wait", resp.StatusCode, time.Since(start))
	}

	const watchers = 12
	type result struct {
		body  string
		index string
		err   error
	}
	results := make(chan result, watchers)
	for i := 0; i < watchers; i++ {
		go func() {
			nd := c.Nodes[i%3]
			resp, err := httpc.Get(nd.URL() + "/v1/kv/w/?recurse&index=" + idx + "&wait=20s")
			if err != nil {
				results <- result{err: err}
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			results <- result{body: string(b), index: resp.Header.Get(wire.HeaderIndex), err: err}
		}()
	}
	// Every watcher is parked; one write wakes them all.
	resp, _ = do(t, http.MethodPut, c.Nodes[2].URL()+"/v1/kv/w/b", []byte("1"))
	written := resp.Header.Get(wire.HeaderIndex)
	for i := 0; i < watchers; i++ {
		select {
		case r := <-results:
			if r.err != nil {
				t.Fatal(r.err)
			}
			if !strings.Contains(r.body, `"Key":"w/b"`) {
				t.Fatalf("watcher woke without the write: index %s body %s", r.index, r.body)
			}
			ri, _ := strconv.ParseUint(r.index, 10, 64)
			wi, _ := strconv.ParseUint(written, 10, 64)
			if ri < wi {
				t.Fatalf("watcher index %d below the write's %d", ri, wi)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("watcher %d did not wake after a write", i)
		}
	}
	// A bad wait is a clear error.
	if resp, _ := do(t, http.MethodGet, c.Nodes[0].URL()+"/v1/kv/w/a?index=1&wait=soon", nil); resp.StatusCode != 400 {
		t.Fatalf("bad wait: %d, want 400", resp.StatusCode)
	}
}

package bench

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeCluster is an in-process stand-in for a raftkv cluster that speaks the endpoints the tool
// uses (docs/api.md): KV PUT/GET with cas and raw, /v1/status/node and /v1/status/peers.
// All nodes share one store; a write succeeds while a leader is alive. Killing the leader
// elects another live node after electionDelay.
type fakeCluster struct {
	electionDelay time.Duration

	mu     sync.Mutex
	index  uint64
	kv     map[string]fakeEntry
	nodes  map[string]*fakeNode // by ID
	order  []string             // IDs in registration order
	leader string               // "" while there is none
	term   uint64

	// failEvery, when > 0, answers every failEvery-th KV request 503 (outcome failed).
	failEvery int64
	// token, when set, is the X-Consul-Token every KV request must carry (else 403), as with ACLs.
	token    string
	requests atomic.Int64
}

type fakeEntry struct {
	value       []byte
	modifyIndex uint64
}

type fakeNode struct {
	id    string
	addr  string
	srv   *http.Server
	done  chan struct{}
	alive bool
	kvReq atomic.Int64 // KV requests served

	conns, maxConns atomic.Int64 // open connections now, and the most at once
}

func newFakeCluster() *fakeCluster {
	return &fakeCluster{electionDelay: 30 * time.Millisecond, kv: map[string]fakeEntry{}, nodes: map[string]*fakeNode{}}
}

// startNode serves node id on ln. The first node to start, or any node when no leader is
// known, becomes leader.
func (fc *fakeCluster) startNode(t testing.TB, id string, ln net.Listener) *fakeNode {
	t.Helper()
	n := &fakeNode{id: id, addr: ln.Addr().String(), done: make(chan struct{}), alive: true}
	n.srv = &http.Server{Handler: fc.handler(n), ReadHeaderTimeout: 5 * time.Second,
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				c := n.conns.Add(1)
				for m := n.maxConns.Load(); c > m && !n.maxConns.CompareAndSwap(m, c); m = n.maxConns.Load() {
				}
			case http.StateClosed, http.StateHijacked:
				n.conns.Add(-1)
			}
		}}
	fc.mu.Lock()
	if _, ok := fc.nodes[id]; !ok {
		fc.order = append(fc.order, id)
	}
	fc.nodes[id] = n
	if fc.leader == "" {
		fc.leader = id
		fc.term++
	}
	fc.mu.Unlock()
	go func() {
		defer close(n.done)
		_ = n.srv.Serve(ln)
	}()
	return n
}

// start3 starts a three-node fake on httptest-style listeners and returns their addresses.
func (fc *fakeCluster) start3(t testing.TB) []string {
	t.Helper()
	var addrs []string
	for i := range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		n := fc.startNode(t, fmt.Sprintf("n%d", i+1), ln)
		t.Cleanup(func() { fc.kill(n) })
		addrs = append(addrs, n.addr)
	}
	return addrs
}

// kill stops n as SIGKILL would: listener and connections closed at once.
func (fc *fakeCluster) kill(n *fakeNode) {
	fc.mu.Lock()
	if !n.alive {
		fc.mu.Unlock()
		return
	}
	n.alive = false
	wasLeader := fc.leader == n.id
	if wasLeader {
		fc.leader = ""
	}
	fc.mu.Unlock()
	_ = n.srv.Close()
	<-n.done
	if wasLeader {
		time.AfterFunc(fc.electionDelay, fc.elect)
	}
}

func (fc *fakeCluster) elect() {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fc.leader != "" {
		return
	}
	for _, id := range fc.order {
		if fc.nodes[id].alive {
			fc.leader = id
			fc.term++
			return
		}
	}
}

func (fc *fakeCluster) handler(n *fakeNode) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status/node", func(w http.ResponseWriter, r *http.Request) {
		fc.mu.Lock()
		s := NodeStatus{ID: n.id, State: "Follower", Term: fc.term, LeaderID: fc.leader,
			LastIndex: fc.index, CommitIndex: fc.index, AppliedIndex: fc.index, Voter: true, Member: true}
		if l := fc.nodes[fc.leader]; l != nil {
			s.LeaderHTTPAddr = l.addr
		}
		if fc.leader == n.id {
			s.State = "Leader"
		}
		fc.mu.Unlock()
		_ = json.NewEncoder(w).Encode(s)
	})
	mux.HandleFunc("GET /v1/status/peers", func(w http.ResponseWriter, r *http.Request) {
		fc.mu.Lock()
		ps := slices.Clone(fc.order)
		fc.mu.Unlock()
		_ = json.NewEncoder(w).Encode(ps)
	})
	mux.HandleFunc("/v1/kv/", func(w http.ResponseWriter, r *http.Request) {
		n.kvReq.Add(1)
		if fc.token != "" && r.Header.Get("X-Consul-Token") != fc.token {
			http.Error(w, `{"error":"Permission denied: token lacks write"}`, http.StatusForbidden)
			return
		}
		key := strings.TrimPrefix(r.URL.Path, "/v1/kv/")
		body, _ := io.ReadAll(r.Body)
		if fe := fc.failEvery; fe > 0 && fc.requests.Add(1)%fe == 0 {
			w.Header().Set("X-Raftkv-Outcome", "failed")
			http.Error(w, `{"error":"no leader","outcome":"failed"}`, http.StatusServiceUnavailable)
			return
		}
		fc.mu.Lock()
		defer fc.mu.Unlock()
		if fc.leader == "" {
			w.Header().Set("X-Raftkv-Outcome", "failed")
			http.Error(w, `{"error":"no leader","outcome":"failed"}`, http.StatusServiceUnavailable)
			return
		}
		q := r.URL.Query()
		switch r.Method {
		case http.MethodPut:
			cur, exists := fc.kv[key]
			if c := q.Get("cas"); c != "" {
				want, err := strconv.ParseUint(c, 10, 64)
				if err != nil {
					http.Error(w, "bad cas", http.StatusBadRequest)
					return
				}
				if (want == 0 && exists) || (want != 0 && (!exists || cur.modifyIndex != want)) {
					w.Header().Set("X-Consul-Index", strconv.FormatUint(fc.index, 10))
					io.WriteString(w, "false")
					return
				}
			}
			fc.index++
			fc.kv[key] = fakeEntry{value: body, modifyIndex: fc.index}
			w.Header().Set("X-Consul-Index", strconv.FormatUint(fc.index, 10))
			io.WriteString(w, "true")
		case http.MethodGet:
			e, ok := fc.kv[key]
			w.Header().Set("X-Consul-Index", strconv.FormatUint(fc.index, 10))
			if !ok {
				w.WriteHeader(http.StatusNotFound)
				return
			}
			if q.Has("raw") {
				w.Write(e.value)
				return
			}
			fmt.Fprintf(w, `[{"Key":%q,"Value":%q,"Flags":0,"CreateIndex":%d,"ModifyIndex":%d,"LockIndex":0}]`,
				key, base64.StdEncoding.EncodeToString(e.value), e.modifyIndex, e.modifyIndex)
		default:
			http.Error(w, "method", http.StatusMethodNotAllowed)
		}
	})
	return mux
}

// fakeStarter starts fake nodes in place of `raftkv server` processes.
func (fc *fakeCluster) starter(t testing.TB) starter {
	return func(n *spawnedNode, args []string) (process, error) {
		if !slices.Contains(args, "--id") || !slices.Contains(args, n.ID) || !slices.Contains(args, n.HTTPAddr) {
			return nil, fmt.Errorf("args %v do not name node %s", args, n.ID)
		}
		ln, err := net.Listen("tcp", n.HTTPAddr)
		if err != nil {
			return nil, err
		}
		fn := fc.startNode(t, n.ID, ln)
		return fakeProcess{fc: fc, n: fn}, nil
	}
}

type fakeProcess struct {
	fc *fakeCluster
	n  *fakeNode
}

func (p fakeProcess) Kill() error { p.fc.kill(p.n); return nil }

// newFakeServer is a one-node fake for tests that need no cluster.
func newFakeServer(t testing.TB) (*fakeCluster, string) {
	t.Helper()
	fc := newFakeCluster()
	srv := httptest.NewUnstartedServer(nil)
	n := fc.startNode(t, "n1", srv.Listener)
	t.Cleanup(func() { fc.kill(n) })
	return fc, n.addr
}

func (fc *fakeCluster) node(id string) *fakeNode {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.nodes[id]
}

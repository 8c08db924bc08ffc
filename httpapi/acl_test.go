package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/raftkv/raftkv/httpapi"
	"github.com/raftkv/raftkv/httpapi/wire"
	"github.com/raftkv/raftkv/internal/testcluster"
)

const (
	aclMgmt   = "mgmt-7f3a9c1e5b"
	aclReader = "reader-2d4e6f80"
	aclApp    = "app-91b2c3d4e5"
)

// aclTestFile: a reader that may read everything, and an app token with
// nested rules (write app/, read app/ro/, deny app/secret/, write again on
// the longer app/secret/open).
const aclTestFile = `
default_policy = "deny"
management_token = "` + aclMgmt + `"

[[token]]
name = "reader"
secret = "` + aclReader + `"
[[token.rule]]
prefix = ""
policy = "read"

[[token]]
name = "app"
secret = "` + aclApp + `"
[[token.rule]]
prefix = "app/"
policy = "write"
[[token.rule]]
prefix = "app/ro/"
policy = "read"
[[token.rule]]
prefix = "app/secret/"
policy = "deny"
[[token.rule]]
prefix = "app/secret/open"
policy = "write"
`

// aclReq sends one request; hdr holds extra headers (the token).
func aclReq(t *testing.T, method, url string, body []byte, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := httpc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read answer of %s %s: %v", method, url, err)
	}
	return resp, b
}

func tok(secret string) []string { return []string{"X-Consul-Token", secret} }

// wantStatus fails unless the answer has status want; for a 403 it also
// checks the JSON error message contains msg and does not echo a secret.
func wantStatus(t *testing.T, what string, resp *http.Response, body []byte, want int, msg string) {
	t.Helper()
	if resp.StatusCode != want {
		t.Fatalf("%s: status %d (%s), want %d", what, resp.StatusCode, bytes.TrimSpace(body), want)
	}
	if want != http.StatusForbidden {
		return
	}
	var e wire.Error
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("%s: 403 body %q is not a JSON error: %v", what, body, err)
	}
	if !strings.Contains(e.Error, msg) {
		t.Errorf("%s: error %q, want it to contain %q", what, e.Error, msg)
	}
	if e.Outcome != wire.OutcomeFailed {
		t.Errorf("%s: outcome %q, want %q", what, e.Outcome, wire.OutcomeFailed)
	}
	for _, s := range []string{aclMgmt, aclReader, aclApp, "nope-secret"} {
		if bytes.Contains(body, []byte(s)) {
			t.Errorf("%s: the answer echoes a secret: %s", what, body)
		}
	}
}

func listKeys(t *testing.T, what string, resp *http.Response, body []byte) []string {
	t.Helper()
	wantStatus(t, what, resp, body, http.StatusOK, "")
	var pairs []wire.KVPair
	if err := json.Unmarshal(body, &pairs); err != nil {
		t.Fatalf("%s: %v: %s", what, err, body)
	}
	var keys []string
	for _, p := range pairs {
		keys = append(keys, p.Key)
	}
	return keys
}

// TestACLEnforcement runs a 3-node in-process cluster with ACLs on and
// checks the rules end to end over HTTP: per-key read/write, longest prefix,
// filtered listings, recursive deletes, management endpoints, unknown
// tokens, the other ways to send a token, forwarding from a follower (which
// the leader re-checks) and follower linearizable reads (whose read-index
// request carries the management token).
func TestACLEnforcement(t *testing.T) {
	rules, err := httpapi.ParseACL("acl.toml", []byte(aclTestFile))
	if err != nil {
		t.Fatalf("parse the test ACL file: %v", err)
	}
	acls := map[string]*httpapi.ACL{} // by node ID, written only while nodes start
	c := testcluster.StartWithAPI(t, 3, func(cfg *httpapi.Config) {
		a := httpapi.NewACL(rules)
		acls[cfg.Node.ID()] = a
		cfg.ACL = a
		cfg.Pprof = true
	})
	l := c.WaitLeader(5 * time.Second)
	f := c.Follower()
	L, F := l.URL(), f.URL()

	for k, v := range map[string]string{
		"app/a": "a", "app/ro/x": "x", "app/secret/s": "s", "app/secret/open1": "o", "other/o": "o",
	} {
		resp, body := aclReq(t, http.MethodPut, L+"/v1/kv/"+k, []byte(v), tok(aclMgmt)...)
		wantStatus(t, "seed "+k+" with the management token", resp, body, http.StatusOK, "")
	}

	t.Run("ProfilesNeedManagement", func(t *testing.T) {
		resp, body := aclReq(t, http.MethodGet, L+"/debug/pprof/goroutine?debug=1", nil, tok(aclApp)...)
		wantStatus(t, "app token GET /debug/pprof/goroutine", resp, body, http.StatusForbidden, "management token")
		resp, body = aclReq(t, http.MethodGet, L+"/debug/pprof/goroutine?debug=1", nil, tok(aclMgmt)...)
		wantStatus(t, "management GET /debug/pprof/goroutine", resp, body, http.StatusOK, "")
		if !strings.Contains(string(body), "goroutine profile") {
			t.Errorf("goroutine profile body starts %.80q", body)
		}
	})

	t.Run("ReadOnlyToken", func(t *testing.T) {
		resp, body := aclReq(t, http.MethodGet, L+"/v1/kv/app/a?raw", nil, tok(aclReader)...)
		wantStatus(t, "reader GET app/a", resp, body, http.StatusOK, "")
		if string(body) != "a" {
			t.Errorf("reader GET app/a: %q, want %q", body, "a")
		}
		resp, body = aclReq(t, http.MethodPut, L+"/v1/kv/app/a", []byte("changed"), tok(aclReader)...)
		wantStatus(t, "reader PUT app/a", resp, body, http.StatusForbidden, `Permission denied: token lacks write on "app/a"`)
		resp, body = aclReq(t, http.MethodDelete, L+"/v1/kv/app/a", nil, tok(aclReader)...)
		wantStatus(t, "reader DELETE app/a", resp, body, http.StatusForbidden, `lacks write on "app/a"`)
		resp, body = aclReq(t, http.MethodGet, L+"/v1/kv/app/a?raw", nil, tok(aclMgmt)...)
		if resp.StatusCode != 200 || string(body) != "a" {
			t.Errorf("app/a after refused writes: %d %q, want 200 %q", resp.StatusCode, body, "a")
		}
	})

	t.Run("Transactions", func(t *testing.T) {
		txn := func(secret string, ops string) (*http.Response, []byte) {
			return aclReq(t, http.MethodPut, F+"/v1/txn", []byte(ops), tok(secret)...)
		}
		// The app token may write app/ but not app/ro/: one op outside its
		// rights refuses the whole transaction before anything is proposed.
		resp, body := txn(aclApp, `[{"KV":{"Verb":"set","Key":"app/t1","Value":"MQ=="}},{"KV":{"Verb":"set","Key":"app/ro/x","Value":"MQ=="}}]`)
		wantStatus(t, "app txn touching app/ro/", resp, body, http.StatusForbidden, `lacks write on "app/ro/x"`)
		resp, body = txn(aclReader, `[{"KV":{"Verb":"delete","Key":"other/o"}}]`)
		wantStatus(t, "reader txn delete", resp, body, http.StatusForbidden, `lacks write on "other/o"`)
		resp, body = txn(aclApp, `[{"KV":{"Verb":"get-tree","Key":"app/"}}]`)
		wantStatus(t, "app get-tree over app/ (app/secret/ denied)", resp, body, http.StatusForbidden, "Permission denied")
		resp, body = aclReq(t, http.MethodGet, L+"/v1/kv/app/t1", nil, tok(aclMgmt)...)
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("app/t1 after refused txns: %d %s, want 404", resp.StatusCode, body)
		}
		// Within its rights (through a follower, forwarded, re-checked).
		resp, body = txn(aclApp, `[{"KV":{"Verb":"set","Key":"app/t1","Value":"MQ=="}},{"KV":{"Verb":"get","Key":"app/ro/x"}}]`)
		wantStatus(t, "app txn within its rights", resp, body, http.StatusOK, "")
		resp, body = txn("", `[{"KV":{"Verb":"get","Key":"app/t1"}}]`)
		wantStatus(t, "txn without a token", resp, body, http.StatusForbidden, "Permission denied")
		resp, body = aclReq(t, http.MethodDelete, L+"/v1/kv/app/t1", nil, tok(aclMgmt)...) // the next subtests list app/
		wantStatus(t, "clean up app/t1", resp, body, http.StatusOK, "")
	})

	t.Run("PrefixRules", func(t *testing.T) {
		for _, tc := range []struct {
			method, key string
			want        int
			msg         string
		}{
			{http.MethodPut, "app/new", 200, ""},
			{http.MethodGet, "app/new", 200, ""},
			{http.MethodGet, "app/ro/x", 200, ""},
			{http.MethodPut, "app/ro/x", 403, `lacks write on "app/ro/x"`},
			{http.MethodGet, "app/secret/s", 403, `lacks read on "app/secret/s"`},
			{http.MethodPut, "app/secret/s", 403, `lacks write on "app/secret/s"`},
			{http.MethodPut, "app/secret/open1", 200, ""}, // the longest prefix wins
			{http.MethodGet, "other/o", 403, `lacks read on "other/o"`},
			{http.MethodPut, "other/o", 403, `lacks write on "other/o"`},
		} {
			var body []byte
			if tc.method == http.MethodPut {
				body = []byte("v")
			}
			resp, rb := aclReq(t, tc.method, L+"/v1/kv/"+tc.key, body, tok(aclApp)...)
			wantStatus(t, "app "+tc.method+" "+tc.key, resp, rb, tc.want, tc.msg)
		}
		// No token: the default policy (deny).
		resp, body := aclReq(t, http.MethodGet, L+"/v1/kv/app/a", nil)
		wantStatus(t, "anonymous GET app/a", resp, body, http.StatusForbidden, `lacks read on "app/a"`)
	})

	t.Run("ListingsAreFiltered", func(t *testing.T) {
		resp, body := aclReq(t, http.MethodGet, F+"/v1/kv/app/?recurse", nil, tok(aclApp)...)
		got := listKeys(t, "app GET app/?recurse", resp, body)
		want := []string{"app/a", "app/new", "app/ro/x", "app/secret/open1"}
		if !slices.Equal(got, want) {
			t.Errorf("app GET app/?recurse: keys %v, want %v (app/secret/s filtered out)", got, want)
		}
		resp, body = aclReq(t, http.MethodGet, F+"/v1/kv/?recurse", nil, tok(aclApp)...)
		if got := listKeys(t, "app GET ?recurse", resp, body); !slices.Equal(got, want) {
			t.Errorf("app GET ?recurse of everything: keys %v, want %v", got, want)
		}
		resp, body = aclReq(t, http.MethodGet, F+"/v1/kv/?keys&separator=/", nil, tok(aclApp)...)
		wantStatus(t, "app ?keys&separator=/", resp, body, 200, "")
		var names []string
		if err := json.Unmarshal(body, &names); err != nil || !slices.Equal(names, []string{"app/"}) {
			t.Errorf("app ?keys&separator=/: %s (%v), want [\"app/\"] (other/ hidden)", body, err)
		}
		resp, body = aclReq(t, http.MethodGet, F+"/v1/kv/app/?keys&separator=/", nil, tok(aclApp)...)
		names = nil
		if err := json.Unmarshal(body, &names); err != nil || !slices.Equal(names, []string{"app/a", "app/new", "app/ro/", "app/secret/"}) {
			t.Errorf("app app/?keys&separator=/: %d %s (%v)", resp.StatusCode, body, err)
		}
		resp, body = aclReq(t, http.MethodGet, F+"/v1/kv/app/secret/?keys", nil, tok(aclApp)...)
		names = nil
		if err := json.Unmarshal(body, &names); err != nil || !slices.Equal(names, []string{"app/secret/open1"}) {
			t.Errorf("app app/secret/?keys: %d %s (%v), want only app/secret/open1", resp.StatusCode, body, err)
		}
		resp, body = aclReq(t, http.MethodGet, F+"/v1/kv/other/?recurse", nil, tok(aclApp)...)
		wantStatus(t, "app GET other/?recurse", resp, body, http.StatusForbidden, `lacks read on "other/"`)
		resp, body = aclReq(t, http.MethodGet, F+"/v1/kv/?recurse", nil, tok(aclReader)...)
		if got := listKeys(t, "reader GET ?recurse", resp, body); len(got) != 6 {
			t.Errorf("reader GET ?recurse: keys %v, want all 6", got)
		}
	})

	t.Run("RecursiveDeleteNeedsWriteOnWholePrefix", func(t *testing.T) {
		count := func() int {
			resp, body := aclReq(t, http.MethodGet, L+"/v1/kv/?recurse", nil, tok(aclMgmt)...)
			return len(listKeys(t, "management GET ?recurse", resp, body))
		}
		before := count()
		resp, body := aclReq(t, http.MethodDelete, F+"/v1/kv/app/?recurse", nil, tok(aclApp)...)
		// app/secret/ (deny) and app/ro/ (read) are under app/; the longest
		// shortfall is named.
		wantStatus(t, "app DELETE app/?recurse", resp, body, http.StatusForbidden, `lacks write on "app/secret/"`)
		resp, body = aclReq(t, http.MethodDelete, F+"/v1/kv/?recurse", nil, tok(aclReader)...)
		wantStatus(t, "reader DELETE ?recurse", resp, body, http.StatusForbidden, `lacks write on ""`)
		if after := count(); after != before {
			t.Fatalf("refused recursive deletes changed the data: %d keys, want %d", after, before)
		}
		// Write on the whole prefix (the longer rule re-grants it): allowed.
		resp, body = aclReq(t, http.MethodDelete, F+"/v1/kv/app/secret/open?recurse", nil, tok(aclApp)...)
		wantStatus(t, "app DELETE app/secret/open?recurse", resp, body, http.StatusOK, "")
		resp, _ = aclReq(t, http.MethodGet, L+"/v1/kv/app/secret/open1", nil, tok(aclMgmt)...)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("app/secret/open1 after its recursive delete: %d, want 404", resp.StatusCode)
		}
		resp, _ = aclReq(t, http.MethodGet, L+"/v1/kv/app/secret/s", nil, tok(aclMgmt)...)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("app/secret/s after deleting app/secret/open*: %d, want 200", resp.StatusCode)
		}
	})

	t.Run("ManagementEndpoints", func(t *testing.T) {
		for _, tc := range []struct {
			method, path, body string
			mgmtStatus         int // with the management token: the endpoint's own answer
		}{
			{http.MethodPost, "/v1/cluster/join", `{}`, http.StatusBadRequest},
			{http.MethodPost, "/v1/cluster/leave", `{"ID":"no-such-node"}`, http.StatusOK}, // already gone: fine
			{http.MethodDelete, "/v1/operator/raft/peer?id=no-such-node", ``, http.StatusNotFound},
			{http.MethodGet, "/v1/snapshot", ``, http.StatusOK},
			{http.MethodPut, "/v1/snapshot", `not a snapshot`, http.StatusBadRequest},
			{http.MethodGet, "/v1/internal/read-index", ``, http.StatusOK},
		} {
			what := tc.method + " " + tc.path
			for _, h := range [][]string{nil, tok(aclApp), tok(aclReader)} {
				resp, body := aclReq(t, tc.method, L+tc.path, []byte(tc.body), h...)
				wantStatus(t, what+" without the management token", resp, body, http.StatusForbidden, "needs the management token")
			}
			resp, body := aclReq(t, tc.method, L+tc.path, []byte(tc.body), tok(aclMgmt)...)
			wantStatus(t, what+" with the management token", resp, body, tc.mgmtStatus, "")
		}
		// Open without a token: health, status and cluster shape, metrics, UI.
		for _, p := range []string{"/v1/health", "/v1/ready", "/v1/status/leader", "/v1/status/peers",
			"/v1/status/node", "/v1/operator/raft/configuration", "/v1/operator/autopilot/health",
			"/v1/operator/raft/leader-history", "/metrics", "/ui/"} {
			resp, body := aclReq(t, http.MethodGet, F+p, nil)
			if resp.StatusCode == http.StatusForbidden || resp.StatusCode >= 500 {
				t.Errorf("GET %s without a token: %d %s, want it open", p, resp.StatusCode, bytes.TrimSpace(body))
			}
		}
	})

	t.Run("UnknownToken", func(t *testing.T) {
		for _, tc := range []struct{ method, path string }{
			{http.MethodGet, "/v1/kv/app/a"},
			{http.MethodPut, "/v1/kv/app/a"},
			{http.MethodGet, "/v1/kv/?recurse"},
			{http.MethodGet, "/v1/snapshot"},
		} {
			resp, body := aclReq(t, tc.method, L+tc.path, []byte("x"), tok("nope-secret")...)
			wantStatus(t, tc.method+" "+tc.path+" with an unknown token", resp, body, http.StatusForbidden, "ACL not found")
		}
	})

	t.Run("BearerAndQueryToken", func(t *testing.T) {
		resp, body := aclReq(t, http.MethodPut, L+"/v1/kv/app/bearer", []byte("b"), "Authorization", "Bearer "+aclApp)
		wantStatus(t, "PUT with Authorization: Bearer app", resp, body, http.StatusOK, "")
		resp, body = aclReq(t, http.MethodPut, L+"/v1/kv/app/bearer", []byte("b"), "Authorization", "Bearer "+aclReader)
		wantStatus(t, "PUT with Authorization: Bearer reader", resp, body, http.StatusForbidden, `lacks write on "app/bearer"`)
		resp, body = aclReq(t, http.MethodGet, L+"/v1/kv/app/bearer?raw&token="+aclReader, nil)
		wantStatus(t, "GET with ?token=reader", resp, body, http.StatusOK, "")
		if string(body) != "b" {
			t.Errorf("GET with ?token=: %q, want %q", body, "b")
		}
		resp, body = aclReq(t, http.MethodGet, L+"/v1/snapshot", nil, "Authorization", "bearer "+aclMgmt)
		wantStatus(t, "snapshot with Authorization: bearer management", resp, body, http.StatusOK, "")
	})

	t.Run("WriteThroughFollower", func(t *testing.T) {
		for _, h := range [][]string{tok(aclApp), {"Authorization", "Bearer " + aclApp}} {
			resp, body := aclReq(t, http.MethodPut, F+"/v1/kv/app/forwarded", []byte(h[0]), h...)
			wantStatus(t, "app PUT through follower with "+h[0], resp, body, http.StatusOK, "")
			resp, body = aclReq(t, http.MethodGet, L+"/v1/kv/app/forwarded?raw", nil, tok(aclMgmt)...)
			if string(body) != h[0] {
				t.Errorf("leader GET app/forwarded after a forwarded write with %s: %d %q", h[0], resp.StatusCode, body)
			}
		}
		resp, body := aclReq(t, http.MethodPut, F+"/v1/kv/app/forwarded", []byte("no"), tok(aclReader)...)
		wantStatus(t, "reader PUT through follower", resp, body, http.StatusForbidden, `lacks write on "app/forwarded"`)

		// The leader checks a forwarded request again: with rules on the
		// leader that do not know the app token, the follower lets the
		// write through and the leader refuses it.
		narrowed, err := httpapi.ParseACL("leader.toml", []byte("management_token = \""+aclMgmt+"\"\n"))
		if err != nil {
			t.Fatal(err)
		}
		acls[l.ID].Set(narrowed)
		resp, body = aclReq(t, http.MethodPut, F+"/v1/kv/app/forwarded", []byte("leader-refuses"), tok(aclApp)...)
		acls[l.ID].Set(rules)
		if st := l.Node.Status(); st.State != "Leader" {
			t.Skipf("leadership moved from %s during the check; cannot tell who refused", l.ID)
		}
		wantStatus(t, "app PUT through follower refused by the leader's rules", resp, body, http.StatusForbidden, "ACL not found")
	})

	t.Run("FollowerLinearizableRead", func(t *testing.T) {
		resp, body := aclReq(t, http.MethodPut, L+"/v1/kv/app/fresh", []byte("1"), tok(aclApp)...)
		wantStatus(t, "app PUT app/fresh", resp, body, http.StatusOK, "")
		for _, nd := range c.Nodes {
			if nd == l {
				continue
			}
			resp, body := aclReq(t, http.MethodGet, nd.URL()+"/v1/kv/app/fresh?raw&consistent", nil, tok(aclReader)...)
			wantStatus(t, "reader linearizable GET on follower "+nd.ID, resp, body, http.StatusOK, "")
			if string(body) != "1" {
				t.Errorf("linearizable GET on follower %s: %q, want %q", nd.ID, body, "1")
			}
		}
	})

	t.Run("BlockingQueries", func(t *testing.T) {
		resp, _ := aclReq(t, http.MethodGet, F+"/v1/kv/app/a", nil, tok(aclMgmt)...)
		idx := resp.Header.Get(wire.HeaderIndex)
		// A watch of a key the token may not read is refused at once, not
		// after its wait.
		start := time.Now()
		resp, body := aclReq(t, http.MethodGet, F+"/v1/kv/app/secret/s?index="+idx+"&wait=20s", nil, tok(aclApp)...)
		wantStatus(t, "app watch of app/secret/s", resp, body, http.StatusForbidden, `lacks read on "app/secret/s"`)
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("refused watch answered after %s, want at once", d)
		}
		// A listing watch wakes on a change and answers filtered.
		type answer struct {
			resp *http.Response
			body []byte
			err  error
		}
		ch := make(chan answer, 1)
		go func() { // ends with the request (20s wait at most)
			req, err := http.NewRequest(http.MethodGet, F+"/v1/kv/app/secret/?recurse&index="+idx+"&wait=20s", nil)
			if err != nil {
				ch <- answer{err: err}
				return
			}
			req.Header.Set("X-Consul-Token", aclApp)
			resp, err := httpc.Do(req)
			if err != nil {
				ch <- answer{err: err}
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			ch <- answer{resp: resp, body: b, err: err}
		}()
		resp, body = aclReq(t, http.MethodPut, L+"/v1/kv/app/secret/open2", []byte("2"), tok(aclApp)...)
		wantStatus(t, "app PUT app/secret/open2", resp, body, http.StatusOK, "")
		select {
		case a := <-ch:
			if a.err != nil {
				t.Fatalf("watch: %v", a.err)
			}
			if got := listKeys(t, "app watch of app/secret/?recurse", a.resp, a.body); !slices.Equal(got, []string{"app/secret/open2"}) {
				t.Errorf("app watch of app/secret/?recurse: keys %v, want only app/secret/open2", got)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the watch did not answer")
		}
	})

	t.Run("ConsulClient", func(t *testing.T) {
		// HashiCorp's own client, configured with a token as a Consul user would.
		kvWith := func(token string) *consul.KV {
			cfg := consul.DefaultConfig()
			cfg.Address, cfg.Token = f.HTTPAddr, token
			cl, err := consul.NewClient(cfg)
			if err != nil {
				t.Fatal(err)
			}
			return cl.KV()
		}
		if _, err := kvWith(aclApp).Put(&consul.KVPair{Key: "app/consul", Value: []byte("c")}, nil); err != nil {
			t.Fatalf("consul client put with the app token: %v", err)
		}
		p, _, err := kvWith(aclReader).Get("app/consul", nil)
		if err != nil || p == nil || string(p.Value) != "c" {
			t.Fatalf("consul client get with the reader token: %+v, %v", p, err)
		}
		_, err = kvWith(aclReader).Put(&consul.KVPair{Key: "app/consul", Value: []byte("no")}, nil)
		if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "Permission denied") {
			t.Errorf("consul client put with the reader token: %v, want a 403 permission error", err)
		}
		keys, _, err := kvWith(aclApp).Keys("", "/", nil)
		if err != nil || !slices.Equal(keys, []string{"app/"}) {
			t.Errorf("consul client keys with the app token: %v, %v; want [app/]", keys, err)
		}
	})

	t.Run("DenialMetrics", func(t *testing.T) {
		resp, body := aclReq(t, http.MethodGet, L+"/metrics", nil)
		wantStatus(t, "GET /metrics", resp, body, http.StatusOK, "")
		for _, reason := range []string{"acl_not_found", "read", "write", "management"} {
			prefix := fmt.Sprintf(`raftkv_acl_denied_total{reason=%q} `, reason)
			i := bytes.Index(body, []byte(prefix))
			if i < 0 {
				t.Errorf("metrics lack %s", prefix)
				continue
			}
			if rest := body[i+len(prefix):]; bytes.HasPrefix(rest, []byte("0\n")) {
				t.Errorf("%s is 0 on %s after denials there", prefix, l.ID)
			}
		}
	})
}

// TestACLFileValidation: bad files are refused with the file name and what
// is wrong; a good one parses into what it says.
func TestACLFileValidation(t *testing.T) {
	const tokenA = "\n[[token]]\nname = \"a\"\nsecret = \"sa\"\n"
	base := "management_token = \"m\"\n"
	tests := []struct {
		name, file string
		want       []string // substrings of the error
	}{
		{"unknown top-level setting", base + "default_polcy = \"deny\"\n", []string{"unknown setting", "default_polcy", "line 2"}},
		{"unknown token setting", base + tokenA + "sekret = \"x\"\n", []string{"unknown setting", "token.sekret"}},
		{"unknown rule setting", base + tokenA + "[[token.rule]]\nprefix = \"a/\"\npolcy = \"read\"\n", []string{"unknown setting", "token.rule.polcy"}},
		{"missing management token", "default_policy = \"deny\"\n", []string{"management_token: missing or empty"}},
		{"empty management token", "management_token = \"\"\n", []string{"management_token: missing or empty"}},
		{"bad default policy", base + "default_policy = \"allow\"\n", []string{`default_policy = "allow"`, `want "deny" or "read"`}},
		{"empty secret", base + "[[token]]\nname = \"a\"\nsecret = \"\"\n", []string{`token 1 ("a"): secret: missing or empty`}},
		{"missing secret", base + "[[token]]\nname = \"a\"\n", []string{`token 1 ("a"): secret: missing or empty`}},
		{"blank in secret", base + "[[token]]\nname = \"a\"\nsecret = \"s a\"\n", []string{"secret: contains blanks"}},
		{"duplicate secrets", base + tokenA + "[[token]]\nname = \"b\"\nsecret = \"sa\"\n", []string{`token 2 ("b")`, "same as the secret of token 1"}},
		{"secret equal to the management token", base + "[[token]]\nname = \"a\"\nsecret = \"m\"\n", []string{"same as the secret of management_token"}},
		{"missing name", base + "[[token]]\nsecret = \"s\"\n", []string{"token 1: missing name"}},
		{"duplicate names", base + tokenA + "[[token]]\nname = \"a\"\nsecret = \"sb\"\n", []string{`token 2 ("a"): name "a" is already used by token 1`}},
		{"bad policy", base + tokenA + "[[token.rule]]\nprefix = \"a/\"\npolicy = \"admin\"\n", []string{`rule 1 (prefix "a/"): policy = "admin": want read, write or deny`}},
		{"missing policy", base + tokenA + "[[token.rule]]\nprefix = \"a/\"\n", []string{"missing policy"}},
		{"missing prefix", base + tokenA + "[[token.rule]]\npolicy = \"read\"\n", []string{"rule 1: missing prefix"}},
		{"duplicate prefix", base + tokenA + "[[token.rule]]\nprefix = \"a/\"\npolicy = \"read\"\n[[token.rule]]\nprefix = \"a/\"\npolicy = \"write\"\n", []string{`rule 2: prefix "a/" appears twice`}},
		{"wrong type", base + "[[token]]\nname = \"a\"\nsecret = 5\n", []string{"line 4"}},
		{"syntax error", base + "[[token]\n", []string{"line 2"}},
	}
	for _, tc := range tests {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			_, err := httpapi.ParseACL("/etc/raftkv/acl.toml", []byte(tc.file))
			if err == nil {
				t.Fatalf("ParseACL accepted:\n%s", tc.file)
			}
			msg := err.Error()
			for _, w := range append([]string{"acl file /etc/raftkv/acl.toml"}, tc.want...) {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q, want it to contain %q", msg, w)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error %q spans several lines, want one", msg)
			}
		})
	}

	path := filepath.Join(t.TempDir(), "acl.toml")
	if _, err := httpapi.LoadACLFile(path); err == nil || !strings.Contains(err.Error(), "read acl file") {
		t.Errorf("LoadACLFile of a missing file: %v, want a read error", err)
	}
	if err := os.WriteFile(path, []byte(aclTestFile), 0o600); err != nil {
		t.Fatal(err)
	}
	rs, err := httpapi.LoadACLFile(path)
	if err != nil {
		t.Fatalf("LoadACLFile of the good file: %v", err)
	}
	if got := rs.TokenNames(); !slices.Equal(got, []string{"reader", "app"}) {
		t.Errorf("TokenNames: %v, want [reader app]", got)
	}
	if rs.DefaultPolicy() != "deny" || rs.ManagementToken() != aclMgmt || rs.Source() != path {
		t.Errorf("parsed: default %q, management %q, source %q", rs.DefaultPolicy(), rs.ManagementToken(), rs.Source())
	}
	rs, err = httpapi.ParseACL("r.toml", []byte("default_policy = \"read\"\nmanagement_token = \"m\"\n"))
	if err != nil || rs.DefaultPolicy() != "read" {
		t.Errorf("default_policy read: %v, %v", rs, err)
	}
}

package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/httpapi/wire"
	"github.com/raftkv/raftkv/internal/testcluster"
)

// FuzzKVRequest throws arbitrary methods, paths, query strings and bodies
// at a live single-node API. Whatever comes in, the handler must not panic
// or answer 500, and every error answer must be the JSON error shape with
// an outcome. Run the fuzzer with:
//
//	go test -tags hashicorpmetrics -run '^$' -fuzz FuzzKVRequest -fuzztime 60s ./httpapi/
func FuzzKVRequest(f *testing.F) {
	seeds := []struct{ method, path, query, body string }{
		{"PUT", "/v1/kv/a", "cas=0&flags=7", "v"},
		{"GET", "/v1/kv/a", "raw", ""},
		{"GET", "/v1/kv/", "recurse&keys&separator=/", ""},
		{"GET", "/v1/kv/a", "index=18446744073709551615&wait=1ms", ""},
		{"DELETE", "/v1/kv/a", "recurse=maybe", ""},
		{"PUT", "/v1/kv/%ff%fe", "cas=-1", "\xff"},
		{"GET", "/v1/kv/a", "stale&consistent&index=1&wait=-1s", ""},
		{"POST", "/v1/cluster/join", "", `{"ID":"x"`},
		{"DELETE", "/v1/operator/raft/peer", "address=nowhere", ""},
		{"GET", "/v1/kv/../../etc/passwd", "", ""},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.query, []byte(s.body))
	}
	c := testcluster.Start(f, 1)
	api := c.Nodes[0].API
	f.Fuzz(func(t *testing.T, method, path, query string, body []byte) {
		switch method {
		case "GET", "PUT", "DELETE", "POST":
		default:
			method = "GET"
		}
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		target := path
		if query != "" {
			target += "?" + query
		}
		req, err := http.NewRequest(method, "http://node"+target, bytes.NewReader(body))
		if err != nil {
			t.Skip("not a request a client can send")
		}
		// Keep blocking queries short.
		q := req.URL.Query()
		if q.Has("index") {
			q.Set("wait", "1ms")
			req.URL.RawQuery = q.Encode()
		}
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s: status %d body %q", method, target, rec.Code, rec.Body.String())
		}
		if rec.Code == http.StatusNotFound && method == "GET" && strings.HasPrefix(req.URL.EscapedPath(), "/v1/kv/") {
			return // a missing key: Consul's empty 404
		}
		if rec.Code >= 400 {
			var e wire.Error
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" || e.Outcome == "" {
				t.Fatalf("%s %s: status %d with a body that is not a JSON error: %q", method, target, rec.Code, rec.Body.String())
			}
		}
	})
}

// FuzzKVQuery fuzzes the values of the KV endpoints' query parameters
// (?recurse, ?keys, ?raw, ?stale, ?consistent, ?index, ?wait, ?cas, ?flags,
// ?separator) on GET, PUT and DELETE against a live single-node API, with an
// exact oracle: the answer is 400 with a JSON error exactly when a parameter
// the method reads is malformed (a flag that is neither empty nor a
// strconv.ParseBool value, a number that is not a uint64, a wait that is not
// a non-negative Go duration) or the combination is refused (?raw with
// ?recurse or ?keys on GET, ?cas with ?recurse on DELETE); otherwise it is a
// normal answer (200, or 404 for a GET that finds nothing). present selects
// which parameters are sent, one bit each in the order above. Run it with:
//
//	go test -tags hashicorpmetrics -run '^$' -fuzz FuzzKVQuery -fuzztime 3m -parallel 1 ./httpapi/
func FuzzKVQuery(f *testing.F) {
	f.Add(uint8(0), uint16(0x3ff), "", "true", "0", "1", "false", "3", "1s", "0", "7", "/")
	f.Add(uint8(0), uint16(0x001), "1", "", "", "", "", "", "", "", "", "")
	f.Add(uint8(0), uint16(0x024), "", "", "yes", "", "", "", "-1s", "", "", "")
	f.Add(uint8(0), uint16(0x060), "", "", "", "", "", "18446744073709551615", "5m", "", "", "")
	f.Add(uint8(0), uint16(0x020), "", "", "", "", "", "18446744073709551616", "", "", "", "")
	f.Add(uint8(0), uint16(0x005), "", "", "", "", "", "", "", "", "", "")
	f.Add(uint8(1), uint16(0x180), "", "", "", "", "", "", "", "0", "0x10", "")
	f.Add(uint8(1), uint16(0x180), "", "", "", "", "", "", "", "+1", " 1", "")
	f.Add(uint8(2), uint16(0x081), "T", "", "", "", "", "", "", "12", "", "")
	f.Add(uint8(2), uint16(0x001), "\xff", "", "", "", "", "", "", "", "", "")
	f.Add(uint8(0), uint16(0x042), "", "TRUE", "", "", "", "", "1h2m3.5s", "", "", "\x00")
	c := testcluster.Start(f, 1)
	nd := c.Nodes[0]
	names := []string{"recurse", "keys", "raw", "stale", "consistent", "index", "wait", "cas", "flags", "separator"}
	f.Fuzz(func(t *testing.T, method uint8, present uint16, recurse, keys, raw, stale, consistent, index, wait, cas, flags, separator string) {
		vals := []string{recurse, keys, raw, stale, consistent, index, wait, cas, flags, separator}
		q := url.Values{}
		has := map[string]bool{}
		for i, name := range names {
			if present&(1<<i) != 0 {
				q.Set(name, vals[i])
				has[name] = true
			}
		}
		boolOK := func(name string) bool {
			if !has[name] || q.Get(name) == "" {
				return true
			}
			_, err := strconv.ParseBool(q.Get(name))
			return err == nil
		}
		boolOn := func(name string) bool {
			b, err := strconv.ParseBool(q.Get(name))
			return has[name] && (q.Get(name) == "" || err == nil && b)
		}
		uintOK := func(name string) bool {
			_, err := strconv.ParseUint(q.Get(name), 10, 64)
			return !has[name] || err == nil
		}
		var wantBad bool
		var m string
		switch method % 3 {
		case 0:
			m = http.MethodGet
			// A valid ?index at or past the applied index would block for
			// ?wait (5m by default): make the wait 0 when it is valid.
			if idx, err := strconv.ParseUint(q.Get("index"), 10, 64); has["index"] && err == nil && idx > 0 {
				if d, err := time.ParseDuration(q.Get("wait")); !has["wait"] || err == nil && d >= 0 {
					q.Set("wait", "0s")
					has["wait"] = true
				}
			}
			d, err := time.ParseDuration(q.Get("wait"))
			waitOK := !has["wait"] || err == nil && d >= 0
			wantBad = !boolOK("raw") || !boolOK("recurse") || !boolOK("keys") || !boolOK("stale") || !boolOK("consistent") ||
				!uintOK("index") || !waitOK ||
				boolOn("raw") && (boolOn("recurse") || boolOn("keys"))
		case 1:
			m = http.MethodPut
			wantBad = !uintOK("cas") || !uintOK("flags")
		case 2:
			m = http.MethodDelete
			wantBad = !boolOK("recurse") || !uintOK("cas") || boolOn("recurse") && has["cas"]
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		req := httptest.NewRequestWithContext(ctx, m, "http://node/v1/kv/fq/k?"+q.Encode(), strings.NewReader("v"))
		rec := httptest.NewRecorder()
		nd.API.ServeHTTP(rec, req)
		if ctx.Err() != nil {
			t.Fatalf("%s ?%s: no answer within 20s (status %d)", m, q.Encode(), rec.Code)
		}
		if rec.Code == http.StatusBadRequest {
			var e wire.Error
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" || e.Outcome != wire.OutcomeFailed {
				t.Fatalf("%s ?%s: 400 with a body that is not a JSON error: %q", m, q.Encode(), rec.Body.String())
			}
		}
		switch {
		case wantBad && rec.Code != http.StatusBadRequest:
			t.Fatalf("%s ?%s: status %d, want 400 for a malformed parameter (body %q)", m, q.Encode(), rec.Code, rec.Body.String())
		case !wantBad && rec.Code == http.StatusBadRequest:
			t.Fatalf("%s ?%s: 400 %q for well-formed parameters", m, q.Encode(), rec.Body.String())
		case !wantBad && rec.Code != http.StatusOK && !(m == http.MethodGet && rec.Code == http.StatusNotFound):
			t.Fatalf("%s ?%s: status %d (body %q), want 200", m, q.Encode(), rec.Code, rec.Body.String())
		}
	})
}

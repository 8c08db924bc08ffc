package httpapi_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

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

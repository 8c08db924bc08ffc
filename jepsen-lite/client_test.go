package jepsenlite

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		header string
		read   bool
		want   Outcome
	}{
		{"server says failed", 503, "failed", false, OutcomeFail},
		{"server says unknown", 504, "unknown", false, OutcomeInfo},
		{"500 with unknown", 500, "unknown", false, OutcomeInfo},
		{"500 with failed", 500, "failed", false, OutcomeFail},
		{"503 no header", 503, "", false, OutcomeFail},
		{"bad request", 400, "", false, OutcomeFail},
		{"504 no header", 504, "", false, OutcomeInfo},
		{"read error is a fail", 504, "unknown", true, OutcomeFail},
	} {
		if got := classifyStatus(tc.status, tc.header, tc.read); got != tc.want {
			t.Errorf("%s: classifyStatus(%d, %q, read=%v) = %s, want %s", tc.name, tc.status, tc.header, tc.read, got, tc.want)
		}
	}
	if got := classifyTransport(false, false); got != OutcomeFail {
		t.Errorf("write never sent: got %s, want fail", got)
	}
	if got := classifyTransport(true, false); got != OutcomeInfo {
		t.Errorf("write possibly sent: got %s, want info", got)
	}
	if got := classifyTransport(true, true); got != OutcomeFail {
		t.Errorf("read possibly sent: got %s, want fail", got)
	}
}

// TestClientOutcomes drives Client against a fake server and checks every
// outcome a real one can produce.
func TestClientOutcomes(t *testing.T) {
	var mode atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch mode.Load().(string) {
		case "unknown":
			w.Header().Set("X-Raftkv-Outcome", "unknown")
			w.WriteHeader(504)
			json.NewEncoder(w).Encode(map[string]string{"error": "leadership lost", "outcome": "unknown"})
		case "failed":
			w.Header().Set("X-Raftkv-Outcome", "failed")
			w.WriteHeader(503)
			json.NewEncoder(w).Encode(map[string]string{"error": "no leader", "outcome": "failed"})
		case "hang":
			time.Sleep(300 * time.Millisecond)
		case "casfalse":
			w.Write([]byte("false"))
		case "ok":
			if r.Method == http.MethodGet {
				w.Header().Set("X-Consul-Index", "9")
				w.Write([]byte(`[{"Key":"k","Value":"djE=","Flags":0,"CreateIndex":5,"ModifyIndex":7,"LockIndex":0}]`))
				return
			}
			w.Header().Set("X-Consul-Index", "12")
			w.Write([]byte("true"))
		case "missing":
			w.WriteHeader(404)
		}
	}))
	defer srv.Close()
	c := NewClient("n1", srv.Listener.Addr().String(), 100*time.Millisecond)
	ctx := context.Background()
	idx := uint64(7)
	for _, tc := range []struct {
		mode string
		do   func() Reply
		want Reply
	}{
		{"ok", func() Reply { return c.Get(ctx, "k", false) }, Reply{Outcome: OutcomeOK, Found: true, Value: "v1", Index: 7}},
		{"missing", func() Reply { return c.Get(ctx, "k", true) }, Reply{Outcome: OutcomeOK, Index: 0}},
		{"ok", func() Reply { return c.Put(ctx, "k", "v", nil) }, Reply{Outcome: OutcomeOK, Swapped: true, Index: 12}},
		{"casfalse", func() Reply { return c.Put(ctx, "k", "v", &idx) }, Reply{Outcome: OutcomeOK}},
		{"unknown", func() Reply { return c.Put(ctx, "k", "v", nil) }, Reply{Outcome: OutcomeInfo, Err: "504 leadership lost"}},
		{"failed", func() Reply { return c.Put(ctx, "k", "v", nil) }, Reply{Outcome: OutcomeFail, Err: "503 no leader"}},
		{"hang", func() Reply { return c.Put(ctx, "k", "v", nil) }, Reply{Outcome: OutcomeInfo, Err: "timeout"}},
		{"hang", func() Reply { return c.Get(ctx, "k", false) }, Reply{Outcome: OutcomeFail, Err: "timeout"}},
	} {
		mode.Store(tc.mode)
		if got := tc.do(); got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.mode, got, tc.want)
		}
	}
	// Nothing listening: the write was never sent, so it certainly failed.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	dead := NewClient("n2", addr, 100*time.Millisecond)
	if got := dead.Put(ctx, "k", "v", nil); got.Outcome != OutcomeFail {
		t.Errorf("connection refused: got %+v, want fail", got)
	}
}

package httpapi_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/httpapi/wire"
	"github.com/raftkv/raftkv/internal/testcluster"
)

// noRedirect is a client that returns redirects instead of following them.
var noRedirect = &http.Client{
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// inlineSource returns the CSP hash source of the page's only <tag> element.
func inlineSource(t *testing.T, page, tag string) string {
	t.Helper()
	m := regexp.MustCompile(`(?s)<`+tag+`>(.*?)</`+tag+`>`).FindAllStringSubmatch(page, -1)
	if len(m) != 1 {
		t.Fatalf("page has %d inline <%s> elements, want 1", len(m), tag)
	}
	sum := sha256.Sum256([]byte(m[0][1]))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

func TestUIRoutes(t *testing.T) {
	c := testcluster.Start(t, 1)
	base := c.Nodes[0].URL()

	resp, body := do(t, http.MethodGet, base+"/ui/", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /ui/: %d %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Fatalf("GET /ui/: Content-Type %q", ct)
	}
	page := string(body)
	for _, want := range []string{"<!doctype html>", "data-node-id", "/v1/operator/raft/leader-history", "/v1/operator/autopilot/health"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// No external assets: nothing is loaded from another origin.
	if regexp.MustCompile(`(?i)<(script|link|img)[^>]+(src|href)=`).MatchString(page) {
		t.Errorf("page loads an external asset")
	}

	// The CSP allows exactly the page's own inline script and style.
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "connect-src 'self'", "frame-ancestors 'none'",
		"script-src " + inlineSource(t, page, "script"), "style-src " + inlineSource(t, page, "style")} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("CSP is not strict: %q", csp)
	}
	if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("X-Content-Type-Options %q", got)
	}

	resp, body = do(t, http.MethodHead, base+"/ui/", nil)
	if resp.StatusCode != http.StatusOK || len(body) != 0 || resp.Header.Get("Content-Security-Policy") != csp {
		t.Errorf("HEAD /ui/: %d, %d body bytes, CSP %q", resp.StatusCode, len(body), resp.Header.Get("Content-Security-Policy"))
	}

	for _, path := range []string{"/", "/ui"} {
		resp, err := noRedirect.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/ui/" {
			t.Errorf("GET %s: %d Location %q, want 302 to /ui/", path, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	// A browser following the redirect lands on the page.
	resp, body = do(t, http.MethodGet, base+"/", nil)
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/ui/" || !strings.Contains(string(body), "data-node-id") {
		t.Errorf("GET / followed: %d at %s", resp.StatusCode, resp.Request.URL.Path)
	}

	// Wrong methods get 405 with the usual JSON error body.
	for _, path := range []string{"/ui/", "/", "/v1/operator/raft/leader-history"} {
		resp, body := do(t, http.MethodPost, base+path, nil)
		var e wire.Error
		if resp.StatusCode != http.StatusMethodNotAllowed || json.Unmarshal(body, &e) != nil || e.Error == "" {
			t.Errorf("POST %s: %d %s, want 405 with a JSON error", path, resp.StatusCode, body)
		}
	}

	// The bootstrapped node has seen itself become leader.
	hist := leaderHistory(t, c.Nodes[0])
	if len(hist) == 0 {
		t.Fatal("leader history is empty on a node that leads")
	}
	last := hist[len(hist)-1]
	if last.LeaderID != "n1" || last.LeaderAddr != c.Nodes[0].Node.RaftAddr() || last.Term == 0 {
		t.Errorf("last leader change %+v, want n1 at %s in a term > 0", last, c.Nodes[0].Node.RaftAddr())
	}
}

// leaderHistory reads GET /v1/operator/raft/leader-history and checks its
// shape: a JSON array, RFC 3339 times, oldest first.
func leaderHistory(t *testing.T, nd *testcluster.Node) []wire.LeaderChange {
	t.Helper()
	h, err := getLeaderHistory(nd)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func getLeaderHistory(nd *testcluster.Node) ([]wire.LeaderChange, error) {
	resp, err := httpc.Get(nd.URL() + "/v1/operator/raft/leader-history")
	if err != nil {
		return nil, fmt.Errorf("get leader history of %s: %w", nd.ID, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		return nil, fmt.Errorf("leader history of %s: status %d, Content-Type %q", nd.ID, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var raw json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		return nil, fmt.Errorf("decode leader history of %s: %w", nd.ID, err)
	}
	if !strings.HasPrefix(string(raw), "[") {
		return nil, fmt.Errorf("leader history of %s is not a JSON array: %s", nd.ID, raw)
	}
	var hist []wire.LeaderChange
	if err := json.Unmarshal(raw, &hist); err != nil {
		return nil, fmt.Errorf("decode leader history of %s: %w", nd.ID, err)
	}
	var prev time.Time
	for i, c := range hist {
		at, err := time.Parse(time.RFC3339Nano, c.Time)
		if err != nil {
			return nil, fmt.Errorf("leader history of %s, entry %d: time %q: %w", nd.ID, i, c.Time, err)
		}
		if at.Before(prev) {
			return nil, fmt.Errorf("leader history of %s is not oldest first: %+v", nd.ID, hist)
		}
		prev = at
		if (c.LeaderID == "") != (c.LeaderAddr == "") {
			return nil, fmt.Errorf("leader history of %s, entry %d has half a leader: %+v", nd.ID, i, c)
		}
	}
	return hist, nil
}

func TestLeaderHistoryRecordsLeaderChange(t *testing.T) {
	c := testcluster.Start(t, 3)
	old := c.WaitLeader(10 * time.Second)
	f := c.Follower()
	oldTerm := old.Node.Status().Term

	// The follower has recorded the current leader.
	var before []wire.LeaderChange
	if err := testcluster.Poll(10*time.Second, func() error {
		h, err := getLeaderHistory(f)
		if err != nil {
			return err
		}
		before = h
		if len(h) == 0 || h[len(h)-1].LeaderID != old.ID {
			return fmt.Errorf("%s's history %+v does not end with leader %s", f.ID, h, old.ID)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// Stopping the leader hands leadership over; the follower records it.
	c.StopNode(c.Index(old))
	nl := c.WaitLeader(15 * time.Second)
	if err := testcluster.Poll(10*time.Second, func() error {
		h, err := getLeaderHistory(f)
		if err != nil {
			return err
		}
		if len(h) <= len(before) {
			return fmt.Errorf("%s's history did not grow: %+v", f.ID, h)
		}
		last := h[len(h)-1]
		if last.LeaderID != nl.ID || last.LeaderAddr != nl.Node.RaftAddr() {
			return fmt.Errorf("%s's history ends with %+v, want leader %s", f.ID, last, nl.ID)
		}
		if last.Term <= oldTerm {
			return fmt.Errorf("new leader recorded in term %d, not after the old term %d", last.Term, oldTerm)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

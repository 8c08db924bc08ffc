package jepsenlite

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Client speaks raftkv's Consul-shaped KV API to one node and turns every
// answer (or the lack of one) into an Outcome. It never retries: a retry would
// hide the very ambiguity the checker needs to see.
type Client struct {
	node string // node ID, for the history
	base string // http://ip:port
	hc   *http.Client
}

// NewClient returns a client of the node at httpAddr ("ip:port").
func NewClient(node, httpAddr string, timeout time.Duration) *Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: timeout}).DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
	}
	return &Client{node: node, base: "http://" + httpAddr, hc: &http.Client{Transport: tr, Timeout: timeout}}
}

// Node is the ID of the node this client talks to.
func (c *Client) Node() string { return c.node }

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Reply is what one request learned.
type Reply struct {
	Outcome Outcome
	Found   bool   // read: the key exists
	Value   string // read: its value
	Index   uint64 // read: ModifyIndex; write: X-Consul-Index
	Swapped bool   // put: the body was `true`
	Err     string
}

// kvEntry is the Consul shape of GET /v1/kv/<key>.
type kvEntry struct {
	Key         string
	Value       []byte // base64 in JSON
	Flags       uint64
	CreateIndex uint64
	ModifyIndex uint64
}

// apiError is the JSON body of every error answer.
type apiError struct {
	Error   string `json:"error"`
	Outcome string `json:"outcome"`
}

// classifyTransport maps a transport error to an outcome. A request that was
// possibly sent (we had a connection) may have been applied; one that never
// got a connection certainly was not. Reads have no effect, so a failed read is
// always a fail.
func classifyTransport(maybeSent, isRead bool) Outcome {
	if isRead || !maybeSent {
		return OutcomeFail
	}
	return OutcomeInfo
}

// classifyStatus maps an HTTP error answer to an outcome, trusting the
// server's X-Raftkv-Outcome header, then the status code.
func classifyStatus(status int, outcomeHeader string, isRead bool) Outcome {
	if isRead {
		return OutcomeFail
	}
	switch strings.ToLower(outcomeHeader) {
	case "failed":
		return OutcomeFail
	case "unknown":
		return OutcomeInfo
	}
	switch {
	case status >= 400 && status < 500, status == http.StatusServiceUnavailable:
		return OutcomeFail // rejected before proposing
	default:
		return OutcomeInfo
	}
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, isRead bool) (*http.Response, []byte, Reply) {
	var maybeSent bool
	trace := &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { maybeSent = true }}
	ctx = httptrace.WithClientTrace(ctx, trace)
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, nil, Reply{Outcome: OutcomeFail, Err: err.Error()}
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, nil, Reply{Outcome: classifyTransport(maybeSent, isRead), Err: shortErr(err)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		// The server answered a status but the body was cut: for a write the
		// status line alone does not tell the answer of a CAS.
		return nil, nil, Reply{Outcome: classifyTransport(true, isRead), Err: shortErr(err)}
	}
	return resp, b, Reply{Outcome: OutcomeOK}
}

func shortErr(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	}
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && len(s)-i < 80 {
		return s[i+2:]
	}
	return s
}

func failFromAnswer(resp *http.Response, b []byte, isRead bool) Reply {
	var ae apiError
	_ = json.Unmarshal(b, &ae)
	h := resp.Header.Get("X-Raftkv-Outcome")
	if h == "" {
		h = ae.Outcome
	}
	msg := ae.Error
	if msg == "" {
		msg = strings.TrimSpace(string(b))
		if len(msg) > 120 {
			msg = msg[:120]
		}
	}
	return Reply{Outcome: classifyStatus(resp.StatusCode, h, isRead), Err: fmt.Sprintf("%d %s", resp.StatusCode, msg)}
}

// Get reads key; stale selects ?stale.
func (c *Client) Get(ctx context.Context, key string, stale bool) Reply {
	p := "/v1/kv/" + url.PathEscape(key)
	if stale {
		p += "?stale"
	}
	resp, b, r := c.do(ctx, http.MethodGet, p, nil, true)
	if resp == nil {
		return r
	}
	switch resp.StatusCode {
	case http.StatusNotFound:
		return Reply{Outcome: OutcomeOK, Index: headerIndex(resp)}
	case http.StatusOK:
		var ents []kvEntry
		if err := json.Unmarshal(b, &ents); err != nil || len(ents) == 0 {
			return Reply{Outcome: OutcomeFail, Err: fmt.Sprintf("bad GET body %q", trim(b))}
		}
		return Reply{Outcome: OutcomeOK, Found: true, Value: string(ents[0].Value), Index: ents[0].ModifyIndex}
	default:
		return failFromAnswer(resp, b, true)
	}
}

// Put writes value to key. With cas != nil it is a check-and-set on the
// ModifyIndex *cas (0 = only if absent).
func (c *Client) Put(ctx context.Context, key, value string, cas *uint64) Reply {
	p := "/v1/kv/" + url.PathEscape(key)
	if cas != nil {
		p += "?cas=" + strconv.FormatUint(*cas, 10)
	}
	resp, b, r := c.do(ctx, http.MethodPut, p, []byte(value), false)
	if resp == nil {
		return r
	}
	if resp.StatusCode != http.StatusOK {
		return failFromAnswer(resp, b, false)
	}
	switch strings.TrimSpace(string(b)) {
	case "true":
		return Reply{Outcome: OutcomeOK, Swapped: true, Index: headerIndex(resp)}
	case "false":
		return Reply{Outcome: OutcomeOK, Swapped: false, Index: headerIndex(resp)}
	default:
		return Reply{Outcome: OutcomeInfo, Err: fmt.Sprintf("bad PUT body %q", trim(b))}
	}
}

func headerIndex(resp *http.Response) uint64 {
	n, _ := strconv.ParseUint(resp.Header.Get("X-Consul-Index"), 10, 64)
	return n
}

func trim(b []byte) string {
	if len(b) > 100 {
		return string(b[:100]) + "…"
	}
	return string(b)
}

// NodeStatus is the shape of GET /v1/status/node.
type NodeStatus struct {
	ID             string
	State          string
	Term           uint64
	LeaderID       string
	LeaderAddr     string
	LeaderHTTPAddr string
	LastIndex      uint64
	CommitIndex    uint64
	AppliedIndex   uint64
	LastContactMs  int64
	Voter          bool
	Member         bool
}

// Digest is the shape of GET /v1/status/digest.
type Digest struct {
	AppliedIndex uint64
	Digest       string
	Keys         int
}

// getJSON fetches a status endpoint into v.
func (c *Client) getJSON(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, trim(b))
	}
	return json.Unmarshal(b, v)
}

// Status returns the node's own view of the cluster.
func (c *Client) Status(ctx context.Context) (NodeStatus, error) {
	var s NodeStatus
	err := c.getJSON(ctx, "/v1/status/node", &s)
	return s, err
}

// Digest returns the node's state-machine digest.
func (c *Client) Digest(ctx context.Context) (Digest, error) {
	var d Digest
	err := c.getJSON(ctx, "/v1/status/digest", &d)
	return d, err
}

// Peers returns the voters' raft addresses.
func (c *Client) Peers(ctx context.Context) ([]string, error) {
	var p []string
	err := c.getJSON(ctx, "/v1/status/peers", &p)
	return p, err
}

// send sends an operator request and fails on any non-200 answer.
func (c *Client) send(ctx context.Context, method, path string, body any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return &StatusError{Method: method, Path: path, Status: resp.StatusCode, Outcome: resp.Header.Get("X-Raftkv-Outcome"), Body: strings.TrimSpace(trim(b))}
	}
	return nil
}

// StatusError is a non-200 answer to an operator request.
type StatusError struct {
	Method, Path string
	Status       int
	Outcome      string // X-Raftkv-Outcome
	Body         string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.Path, e.Status, e.Body)
}

// definitelyFailed reports whether err is an answer proving nothing happened.
func definitelyFailed(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && (se.Outcome == "failed" || se.Status == http.StatusServiceUnavailable)
}

// Join asks the cluster (via this node) to add a server.
func (c *Client) Join(ctx context.Context, id, raftAddr, httpAddr string) error {
	return c.send(ctx, http.MethodPost, "/v1/cluster/join", map[string]string{"ID": id, "RaftAddr": raftAddr, "HTTPAddr": httpAddr})
}

// Leave asks the cluster (via this node) to remove server id gracefully.
func (c *Client) Leave(ctx context.Context, id string) error {
	return c.send(ctx, http.MethodPost, "/v1/cluster/leave", map[string]string{"ID": id})
}

// RemovePeer removes server id from the configuration.
func (c *Client) RemovePeer(ctx context.Context, id string) error {
	return c.send(ctx, http.MethodDelete, "/v1/operator/raft/peer?id="+url.QueryEscape(id), nil)
}

// Package client is a small Go client for raftkv's HTTP API, used by the
// raftkv CLI and the server's join loop. It imports only httpapi/wire.
// (Any Consul KV client works against raftkv too; this one adds raftkv's
// own status and membership endpoints and reports outcomes.)
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/raftkv/raftkv/httpapi/wire"
)

// Error is a non-2xx answer from a node.
type Error struct {
	Status  int
	Message string
	Outcome string // wire.OutcomeFailed or wire.OutcomeUnknown
	Body    []byte // the answer's body, as received
}

func (e *Error) Error() string {
	if e.Outcome == wire.OutcomeUnknown {
		return fmt.Sprintf("%s (HTTP %d, outcome unknown)", e.Message, e.Status)
	}
	return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status)
}

// answerError builds the *Error for a non-2xx answer from its body: the
// JSON error when there is one, else the text or the status text.
func answerError(resp *http.Response, body []byte) *Error {
	var e wire.Error
	if json.Unmarshal(body, &e) != nil || e.Error == "" {
		e.Error = strings.TrimSpace(string(body))
		if e.Error == "" {
			e.Error = http.StatusText(resp.StatusCode)
		}
	}
	if e.Outcome == "" {
		e.Outcome = resp.Header.Get(wire.HeaderOutcome)
	}
	return &Error{Status: resp.StatusCode, Message: e.Error, Outcome: e.Outcome, Body: body}
}

// readAnswerError reads a bounded error body and builds its *Error.
func readAnswerError(resp *http.Response) *Error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return answerError(resp, body)
}

// ErrNotFound is returned by Get for a missing key.
var ErrNotFound = errors.New("key not found")

// Client talks to one node.
type Client struct {
	base  string
	http  *http.Client
	token string // ACL token sent as X-Consul-Token; "" = none
}

// New returns a client for the node at addr ("host:port" or a URL).
func New(addr string, timeout time.Duration) *Client {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return &Client{base: strings.TrimRight(addr, "/"), http: &http.Client{Timeout: timeout}}
}

// WithTransport returns a copy of c that sends its requests through rt
// (servers use it to dial peers through address overrides).
func (c *Client) WithTransport(rt http.RoundTripper) *Client {
	hc := *c.http
	hc.Transport = rt
	cp := *c
	cp.http = &hc
	return &cp
}

// WithToken returns a copy of c that sends token as X-Consul-Token on every
// request (an ACL token; "" sends none).
func (c *Client) WithToken(token string) *Client {
	cp := *c
	cp.token = token
	return &cp
}

// setToken adds the ACL token to req, if c has one.
func (c *Client) setToken(req *http.Request) {
	if c.token != "" {
		req.Header.Set("X-Consul-Token", c.token)
	}
}

// WithTLS returns a copy of c that speaks HTTPS, verifying the node and
// presenting a client certificate as cfg says. An http:// base address
// (New's default for "host:port") becomes https://.
func (c *Client) WithTLS(cfg *tls.Config) *Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = cfg
	cp := c.WithTransport(t)
	if rest, ok := strings.CutPrefix(cp.base, "http://"); ok {
		cp.base = "https://" + rest
	}
	return cp
}

// Addr is the base URL.
func (c *Client) Addr() string { return c.base }

func (c *Client) do(ctx context.Context, method, path string, q url.Values, body []byte, out any) (http.Header, error) {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	c.setToken(req)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return resp.Header, fmt.Errorf("read answer of %s %s: %w", method, path, err)
	}
	if resp.StatusCode == http.StatusNotFound && method == http.MethodGet && strings.HasPrefix(path, "/v1/kv/") {
		return resp.Header, ErrNotFound
	}
	if resp.StatusCode/100 != 2 {
		return resp.Header, answerError(resp, data)
	}
	if out != nil {
		if raw, ok := out.(*[]byte); ok {
			*raw = data
			return resp.Header, nil
		}
		if err := json.Unmarshal(data, out); err != nil {
			return resp.Header, fmt.Errorf("decode answer of %s %s: %w", method, path, err)
		}
	}
	return resp.Header, nil
}

func kvPath(key string) string {
	parts := strings.Split(key, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return "/v1/kv/" + strings.Join(parts, "/")
}

// PutOptions are the optional parts of a put.
type PutOptions struct {
	CAS   *uint64
	Flags uint64
}

// Put writes key=value; ok is false when a CAS did not match. index is the
// Raft index of the write.
func (c *Client) Put(ctx context.Context, key string, value []byte, o PutOptions) (ok bool, index uint64, err error) {
	q := url.Values{}
	if o.CAS != nil {
		q.Set("cas", strconv.FormatUint(*o.CAS, 10))
	}
	if o.Flags != 0 {
		q.Set("flags", strconv.FormatUint(o.Flags, 10))
	}
	h, err := c.do(ctx, http.MethodPut, kvPath(key), q, value, &ok)
	return ok, headerIndex(h), err
}

// Consistency selects a read mode.
type Consistency string

// Read modes; see docs/api.md.
const (
	Default    Consistency = ""
	Consistent Consistency = "consistent"
	Stale      Consistency = "stale"
)

func readQuery(mode Consistency) url.Values {
	q := url.Values{}
	if mode != Default {
		q.Set(string(mode), "")
	}
	return q
}

// Get reads one key; ErrNotFound when absent.
func (c *Client) Get(ctx context.Context, key string, mode Consistency) (wire.KVPair, error) {
	var out []wire.KVPair
	if _, err := c.do(ctx, http.MethodGet, kvPath(key), readQuery(mode), nil, &out); err != nil {
		return wire.KVPair{}, err
	}
	if len(out) == 0 {
		return wire.KVPair{}, ErrNotFound
	}
	return out[0], nil
}

// List reads every entry under prefix (empty list when none).
func (c *Client) List(ctx context.Context, prefix string, mode Consistency) ([]wire.KVPair, error) {
	q := readQuery(mode)
	q.Set("recurse", "")
	var out []wire.KVPair
	_, err := c.do(ctx, http.MethodGet, kvPath(prefix), q, nil, &out)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	return out, err
}

// Keys lists key names under prefix, folded at separator when given.
func (c *Client) Keys(ctx context.Context, prefix, separator string, mode Consistency) ([]string, error) {
	q := readQuery(mode)
	q.Set("keys", "")
	if separator != "" {
		q.Set("separator", separator)
	}
	var out []string
	_, err := c.do(ctx, http.MethodGet, kvPath(prefix), q, nil, &out)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	return out, err
}

// Delete removes key (or every key under it with recurse); ok is false when
// a CAS did not match.
func (c *Client) Delete(ctx context.Context, key string, recurse bool, cas *uint64) (bool, error) {
	q := url.Values{}
	if recurse {
		q.Set("recurse", "")
	}
	if cas != nil {
		q.Set("cas", strconv.FormatUint(*cas, 10))
	}
	var ok bool
	_, err := c.do(ctx, http.MethodDelete, kvPath(key), q, nil, &ok)
	return ok, err
}

// Status reads the node's own status.
func (c *Client) Status(ctx context.Context) (wire.NodeStatus, error) {
	var s wire.NodeStatus
	_, err := c.do(ctx, http.MethodGet, "/v1/status/node", nil, nil, &s)
	return s, err
}

// RaftStats is what the leader's failure detector asks every server for
// (Consul's RaftStats): time since it last heard from the leader (-1:
// never), and the term and index of its last log entry.
func (c *Client) RaftStats(ctx context.Context) (lastContact time.Duration, lastTerm, lastIndex uint64, err error) {
	s, err := c.Status(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	return time.Duration(s.LastContactMs) * time.Millisecond, s.LastLogTerm, s.LastIndex, nil
}

// Configuration reads the Raft configuration.
func (c *Client) Configuration(ctx context.Context) (wire.RaftConfiguration, error) {
	var rc wire.RaftConfiguration
	_, err := c.do(ctx, http.MethodGet, "/v1/operator/raft/configuration", nil, nil, &rc)
	return rc, err
}

// Digest reads the state machine digest.
func (c *Client) Digest(ctx context.Context) (wire.Digest, error) {
	var d wire.Digest
	_, err := c.do(ctx, http.MethodGet, "/v1/status/digest", nil, nil, &d)
	return d, err
}

// Join asks the cluster (through this node) to add a server.
func (c *Client) Join(ctx context.Context, req wire.JoinRequest) error {
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode join request: %w", err)
	}
	_, err = c.do(ctx, http.MethodPost, "/v1/cluster/join", nil, body, nil)
	return err
}

// Leave asks the cluster to remove server id gracefully; empty id = the node
// this client talks to.
func (c *Client) Leave(ctx context.Context, id string) error {
	body, err := json.Marshal(wire.LeaveRequest{ID: id})
	if err != nil {
		return fmt.Errorf("encode leave request: %w", err)
	}
	_, err = c.do(ctx, http.MethodPost, "/v1/cluster/leave", nil, body, nil)
	return err
}

// Remove removes server id from the configuration (Consul's operator API).
func (c *Client) Remove(ctx context.Context, id string) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/operator/raft/peer", url.Values{"id": {id}}, nil, nil)
	return err
}

func headerIndex(h http.Header) uint64 {
	if h == nil {
		return 0
	}
	v, _ := strconv.ParseUint(h.Get(wire.HeaderIndex), 10, 64)
	return v
}

// Health reads the leader's failure-detector view (followers forward).
// healthy is false when the node answered 429 (cluster not healthy); the
// view is returned either way.
func (c *Client) Health(ctx context.Context) (h wire.AutopilotHealth, healthy bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/operator/autopilot/health", nil)
	if err != nil {
		return h, false, fmt.Errorf("build request: %w", err)
	}
	c.setToken(req)
	resp, err := c.http.Do(req)
	if err != nil {
		return h, false, fmt.Errorf("GET /v1/operator/autopilot/health: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return h, false, fmt.Errorf("read health: %w", err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusTooManyRequests {
		return h, false, answerError(resp, data)
	}
	if err := json.Unmarshal(data, &h); err != nil {
		return h, false, fmt.Errorf("decode health: %w", err)
	}
	return h, resp.StatusCode == http.StatusOK, nil
}

// Watch is a blocking query: it returns the entries at key (every entry
// under it with recurse; nil when there are none) once the cluster's index
// passes index, or after wait. The returned index is the one to pass next.
func (c *Client) Watch(ctx context.Context, key string, recurse bool, index uint64, wait time.Duration) ([]wire.KVPair, uint64, error) {
	q := url.Values{}
	if recurse {
		q.Set("recurse", "")
	}
	q.Set("index", strconv.FormatUint(index, 10))
	q.Set("wait", wait.String())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+kvPath(key)+"?"+q.Encode(), nil)
	if err != nil {
		return nil, index, fmt.Errorf("build request: %w", err)
	}
	c.setToken(req)
	// A blocking query outlives the client's normal timeout.
	hc := *c.http
	hc.Timeout = wait + wait/16 + 10*time.Second
	resp, err := hc.Do(req)
	if err != nil {
		return nil, index, fmt.Errorf("watch %s: %w", key, err)
	}
	defer resp.Body.Close()
	next := headerIndex(resp.Header)
	if resp.StatusCode == http.StatusNotFound {
		return nil, next, nil
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, index, fmt.Errorf("read watch answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, index, answerError(resp, data)
	}
	var out []wire.KVPair
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, index, fmt.Errorf("decode watch answer: %w", err)
	}
	return out, next, nil
}

// SaveSnapshot streams a consistent snapshot of the cluster's state into w
// (stale: the node's local state, without a linearizable barrier). It
// returns the index the snapshot was taken at and the bytes written.
func (c *Client) SaveSnapshot(ctx context.Context, w io.Writer, stale bool) (uint64, int64, error) {
	u := c.base + "/v1/snapshot"
	if stale {
		u += "?stale"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("build request: %w", err)
	}
	c.setToken(req)
	hc := *c.http
	hc.Timeout = 0 // a large snapshot takes as long as it takes; ctx bounds it
	resp, err := hc.Do(req)
	if err != nil {
		return 0, 0, fmt.Errorf("GET /v1/snapshot: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, readAnswerError(resp)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return 0, n, fmt.Errorf("receive snapshot: %w", err)
	}
	return headerIndex(resp.Header), n, nil
}

// RestoreSnapshot replaces the cluster's whole state with the snapshot
// stream r of size bytes; it returns the index the restore committed at.
func (c *Client) RestoreSnapshot(ctx context.Context, r io.Reader, size int64) (uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.base+"/v1/snapshot", r)
	if err != nil {
		return 0, fmt.Errorf("build request: %w", err)
	}
	c.setToken(req)
	req.ContentLength = size
	hc := *c.http
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("PUT /v1/snapshot: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, readAnswerError(resp)
	}
	return headerIndex(resp.Header), nil
}

package httpapi

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftkv/raftkv/cluster"
)

// Config configures the API handler.
type Config struct {
	// Node is the local Raft node. Required.
	Node *cluster.Node
	// Logger; nil = slog.Default().
	Logger *slog.Logger
	// ForwardTimeout bounds a request forwarded to the leader. Default 10s.
	ForwardTimeout time.Duration
	// ReadTimeout bounds a linearizable read (confirmation plus waiting for
	// the local state machine). Default 5s.
	ReadTimeout time.Duration
	// PeerTransport carries requests to other nodes (forwarding, read
	// index); nil = a kept-alive transport of the API's own.
	PeerTransport http.RoundTripper
	// PeerTLS: other nodes serve HTTPS, so requests to them (forwarding,
	// read index) use https URLs; PeerTransport must then speak TLS (see
	// NewPeerTransportTLS).
	PeerTLS bool
	// Registry receives the API's Prometheus metrics and is served at
	// /metrics; nil = a private registry.
	Registry *prometheus.Registry
	// LeaderWait is how long a request that finds no known leader waits for
	// one before failing. Default 2s: an election takes well under that.
	LeaderWait time.Duration
	// ACL, when not nil, enforces token rules on every request (see
	// acl.go); nil = open, no tokens needed.
	ACL *ACL
	// Pprof serves net/http/pprof's profiles under /debug/pprof/ (behind
	// the management token when ACLs are on).
	Pprof bool
}

// DefaultConfig returns a Config with default timeouts and no Node.
func DefaultConfig() Config {
	return Config{ForwardTimeout: 10 * time.Second, ReadTimeout: 5 * time.Second, LeaderWait: 2 * time.Second}
}

// API is the HTTP API of one node.
type API struct {
	cfg         Config
	node        *cluster.Node
	log         *slog.Logger
	client      *http.Client // to the leader, kept-alive
	router      http.Handler
	metrics     *metrics
	readIndexes readIndexBatcher // follower reads share read-index requests
}

// New builds the API handler.
func New(cfg Config) *API {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	d := DefaultConfig()
	if cfg.ForwardTimeout <= 0 {
		cfg.ForwardTimeout = d.ForwardTimeout
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = d.ReadTimeout
	}
	if cfg.LeaderWait <= 0 {
		cfg.LeaderWait = d.LeaderWait
	}
	if cfg.PeerTransport == nil {
		cfg.PeerTransport = NewPeerTransport(nil)
	}
	a := &API{
		cfg:    cfg,
		node:   cfg.Node,
		log:    log,
		client: &http.Client{Transport: cfg.PeerTransport},
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	a.registerMetrics(reg)
	r := a.routes()
	r.Path("/metrics").Handler(metricsHandler(reg))
	r.Use(a.instrument)
	r.Use(a.aclGate)
	a.router = r
	return a
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.router.ServeHTTP(w, r) }

// Close releases idle connections to the leader.
func (a *API) Close() { a.client.CloseIdleConnections() }

func (a *API) routes() *mux.Router {
	r := mux.NewRouter()
	// Keys are taken verbatim from the escaped path: no cleaning, so "a//b"
	// and "a/../b" are keys, not redirects.
	r.SkipClean(true)
	r.UseEncodedPath()
	r.NotFoundHandler = a.handle(func(w http.ResponseWriter, r *http.Request) error { return errNoRoute })

	// Each path is registered once and dispatches on the method itself, so
	// a wrong method gets 405 (gorilla/mux reports 404 for a method
	// mismatch once subrouters or several routes are involved).
	r.PathPrefix("/v1/kv/").Handler(a.methods(map[string]handlerFunc{
		http.MethodGet: a.kvGet, http.MethodPut: a.kvPut, http.MethodDelete: a.kvDelete,
	}))
	get := func(h handlerFunc) http.Handler { return a.methods(map[string]handlerFunc{http.MethodGet: h}) }
	post := func(h handlerFunc) http.Handler {
		return a.methods(map[string]handlerFunc{http.MethodPost: h, http.MethodPut: h})
	}
	r.Path("/v1/txn").Handler(a.methods(map[string]handlerFunc{http.MethodPut: a.txn, http.MethodPost: a.txn}))
	r.Path("/v1/health").Handler(get(a.health))
	r.Path("/v1/ready").Handler(get(a.ready))
	r.Path("/v1/status/leader").Handler(get(a.statusLeader))
	r.Path("/v1/status/peers").Handler(get(a.statusPeers))
	r.Path("/v1/status/node").Handler(get(a.statusNode))
	r.Path("/v1/status/digest").Handler(get(a.statusDigest))
	r.Path("/v1/operator/raft/configuration").Handler(get(a.raftConfiguration))
	r.Path("/v1/operator/autopilot/health").Handler(get(a.autopilotHealth))
	r.Path("/v1/operator/raft/peer").Handler(a.methods(map[string]handlerFunc{http.MethodDelete: a.raftRemovePeer}))
	r.Path("/v1/snapshot").Handler(a.methods(map[string]handlerFunc{http.MethodGet: a.snapshotSave, http.MethodPut: a.snapshotRestore}))
	r.Path("/v1/cluster/join").Handler(post(a.clusterJoin))
	r.Path("/v1/cluster/leave").Handler(post(a.clusterLeave))
	r.Path("/v1/internal/read-index").Handler(get(a.internalReadIndex))
	a.uiRoutes(r) // the web page, its redirects and leader history (ui.go)
	if a.cfg.Pprof {
		r.Path("/debug/pprof/cmdline").HandlerFunc(pprof.Cmdline)
		r.Path("/debug/pprof/profile").HandlerFunc(pprof.Profile)
		r.Path("/debug/pprof/symbol").HandlerFunc(pprof.Symbol)
		r.Path("/debug/pprof/trace").HandlerFunc(pprof.Trace)
		r.PathPrefix("/debug/pprof/").HandlerFunc(pprof.Index) // the index and every named profile
	}
	return r
}

// methods dispatches on the request method; others get 405 with Allow.
func (a *API) methods(m map[string]handlerFunc) http.Handler {
	allow := make([]string, 0, len(m))
	for k := range m {
		allow = append(allow, k)
	}
	sort.Strings(allow)
	allowHdr := strings.Join(allow, ", ")
	return a.handle(func(w http.ResponseWriter, r *http.Request) error {
		h, ok := m[r.Method]
		if !ok {
			w.Header().Set("Allow", allowHdr)
			return errMethodNotAllowed
		}
		return h(w, r)
	})
}

// handlerFunc is a handler that returns its error instead of writing it.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (a *API) handle(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a.setClusterHeaders(w)
		if err := h(w, r); err != nil {
			a.writeError(w, r, err)
		}
	}
}

// NewPeerTransport returns the kept-alive HTTP transport nodes use to talk
// to each other; dial, if not nil, replaces how connections are made.
func NewPeerTransport(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Transport {
	t := &http.Transport{
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
	}
	if dial != nil {
		t.DialContext = dial
	}
	return t
}

// NewPeerTransportTLS is NewPeerTransport for nodes that serve HTTPS:
// https connections are made with dial (or a plain dialer) and secured with
// tlsFor(host), host being the one in the request's URL, i.e. the peer's
// advertised address, never a dial override's target. tlsFor is called per
// connection, so reloaded certificates apply to new connections.
func NewPeerTransportTLS(dial func(ctx context.Context, network, addr string) (net.Conn, error), tlsFor func(serverName string) *tls.Config) *http.Transport {
	t := NewPeerTransport(dial)
	if dial == nil {
		d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
		dial = d.DialContext
	}
	t.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("peer address %q: %w", addr, err)
		}
		raw, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		c := tls.Client(raw, tlsFor(host))
		if err := c.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, fmt.Errorf("tls handshake with %s: %w", addr, err)
		}
		return c, nil
	}
	return t
}

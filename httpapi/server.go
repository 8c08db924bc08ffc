package httpapi

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/gorilla/mux"

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
	// LeaderWait is how long a request that finds no known leader waits for
	// one before failing. Default 2s: an election takes well under that.
	LeaderWait time.Duration
}

// DefaultConfig returns a Config with default timeouts and no Node.
func DefaultConfig() Config {
	return Config{ForwardTimeout: 10 * time.Second, ReadTimeout: 5 * time.Second, LeaderWait: 2 * time.Second}
}

// API is the HTTP API of one node.
type API struct {
	cfg    Config
	node   *cluster.Node
	log    *slog.Logger
	client *http.Client // to the leader, kept-alive
	router *mux.Router
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
	a := &API{
		cfg:  cfg,
		node: cfg.Node,
		log:  log,
		client: &http.Client{Transport: &http.Transport{
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
		}},
	}
	a.router = a.routes()
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
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.writeError(w, r, errMethodNotAllowed)
	})
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.writeError(w, r, errNoRoute)
	})

	kv := r.PathPrefix("/v1/kv/").Subrouter()
	kv.Methods(http.MethodGet).HandlerFunc(a.handle(a.kvGet))
	kv.Methods(http.MethodPut).HandlerFunc(a.handle(a.kvPut))
	kv.Methods(http.MethodDelete).HandlerFunc(a.handle(a.kvDelete))

	r.Methods(http.MethodGet).Path("/v1/status/leader").HandlerFunc(a.handle(a.statusLeader))
	r.Methods(http.MethodGet).Path("/v1/status/peers").HandlerFunc(a.handle(a.statusPeers))
	r.Methods(http.MethodGet).Path("/v1/status/node").HandlerFunc(a.handle(a.statusNode))
	r.Methods(http.MethodGet).Path("/v1/status/digest").HandlerFunc(a.handle(a.statusDigest))
	r.Methods(http.MethodGet).Path("/v1/operator/raft/configuration").HandlerFunc(a.handle(a.raftConfiguration))
	r.Methods(http.MethodDelete).Path("/v1/operator/raft/peer").HandlerFunc(a.handle(a.raftRemovePeer))
	r.Methods(http.MethodPost, http.MethodPut).Path("/v1/cluster/join").HandlerFunc(a.handle(a.clusterJoin))
	r.Methods(http.MethodPost, http.MethodPut).Path("/v1/cluster/leave").HandlerFunc(a.handle(a.clusterLeave))
	r.Methods(http.MethodGet).Path("/v1/internal/read-index").HandlerFunc(a.handle(a.internalReadIndex))
	return r
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

package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/httpapi/wire"
)

// errLeaderUnreachable: the request could not be sent to the leader, so
// nothing happened.
var errLeaderUnreachable = errors.New("leader unreachable")

// forwardedError is an error answer relayed from the leader.
type forwardedError struct {
	status int
	body   wire.Error
}

func (e *forwardedError) Error() string {
	return fmt.Sprintf("leader answered %d: %s", e.status, e.body.Error)
}

// leaderDo runs op, which must run on the leader. When this node is not the
// leader, the request (with body) is forwarded to the leader instead and its
// answer relayed, waiting up to LeaderWait for a leader to be known. A
// forwarded request is never forwarded again.
func (a *API) leaderDo(w http.ResponseWriter, r *http.Request, body []byte, op func(ctx context.Context) error) (forwarded bool, err error) {
	deadline := time.Now().Add(a.cfg.LeaderWait)
	for {
		err = op(r.Context())
		var nle *cluster.NotLeaderError
		if !errors.As(err, &nle) || r.Header.Get(wire.HeaderForwarded) != "" {
			return false, err
		}
		if nle.LeaderHTTPAddr != "" && nle.LeaderID != a.node.ID() {
			return true, a.forward(w, r, nle.LeaderHTTPAddr, bytes.NewReader(body), int64(len(body)))
		}
		if err := a.pause(r.Context(), deadline); err != nil {
			return false, fmt.Errorf("%w: %w", cluster.ErrNoLeader, err)
		}
	}
}

// pause waits a little before looking for a leader again; it fails once
// the deadline has passed.
func (a *API) pause(ctx context.Context, deadline time.Time) error {
	if time.Now().After(deadline) {
		return errors.New("no leader elected in time")
	}
	t := time.NewTimer(20 * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// forward sends the client's request to the leader and copies the answer
// back. If the request never left this node the outcome is failed; once it
// was written, a lost answer leaves the outcome unknown.
func (a *API) forward(w http.ResponseWriter, r *http.Request, leaderHTTP string, body io.Reader, size int64) error {
	return a.forwardWithin(w, r, leaderHTTP, body, size, a.cfg.ForwardTimeout)
}

// forwardWithin is forward with its own time limit (a snapshot restore
// streams and installs gigabytes; a KV write takes milliseconds).
func (a *API) forwardWithin(w http.ResponseWriter, r *http.Request, leaderHTTP string, body io.Reader, size int64, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	// WroteRequest runs on the transport's goroutine: hence atomic.
	var wrote atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(httptrace.WroteRequestInfo) { wrote.Store(true) },
	})
	req, err := http.NewRequestWithContext(ctx, r.Method, a.peerURL(leaderHTTP, r.URL.RequestURI()), body)
	if err != nil {
		return fmt.Errorf("build forwarded request: %w", err)
	}
	req.ContentLength = size
	for _, h := range []string{"Content-Type", headerToken, "Authorization"} { // the leader re-checks the caller's token
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	req.Header.Set(wire.HeaderForwarded, a.node.ID())
	resp, err := a.client.Do(req)
	if err != nil {
		if !wrote.Load() {
			return fmt.Errorf("%w: %s: %w", errLeaderUnreachable, leaderHTTP, err)
		}
		return &apiError{status: http.StatusGatewayTimeout, outcome: wire.OutcomeUnknown,
			msg: "forwarded to the leader but got no answer; outcome unknown"}
	}
	defer resp.Body.Close()
	for _, h := range []string{"Content-Type", wire.HeaderIndex, wire.HeaderOutcome} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	if _, err := io.Copy(w, resp.Body); err != nil {
		a.log.Warn("relay leader answer", "leader", leaderHTTP, "error", err)
	}
	return nil
}

// peerURL is the URL of requestURI on the node whose HTTP address is
// hostPort: https when nodes serve TLS.
func (a *API) peerURL(hostPort, requestURI string) string {
	if a.cfg.PeerTLS {
		return "https://" + hostPort + requestURI
	}
	return "http://" + hostPort + requestURI
}

// remoteReadIndex asks the leader for a read index.
func (a *API) remoteReadIndex(ctx context.Context, leaderHTTP string) (uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.peerURL(leaderHTTP, "/v1/internal/read-index"), nil)
	if err != nil {
		return 0, fmt.Errorf("build read-index request: %w", err)
	}
	req.Header.Set(wire.HeaderForwarded, a.node.ID())
	a.setInternalToken(req)
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%w: read index from %s: %w", errLeaderUnreachable, leaderHTTP, err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		var e wire.Error
		if err := dec.Decode(&e); err != nil {
			return 0, fmt.Errorf("%w: read index from %s: status %d", errLeaderUnreachable, leaderHTTP, resp.StatusCode)
		}
		e.Outcome = wire.OutcomeFailed
		return 0, &forwardedError{status: resp.StatusCode, body: e}
	}
	var ri wire.ReadIndex
	if err := dec.Decode(&ri); err != nil {
		return 0, fmt.Errorf("%w: decode read index from %s: %w", errLeaderUnreachable, leaderHTTP, err)
	}
	return ri.Index, nil
}

// linearize makes the local state machine safe for a linearizable read:
// on the leader by ReadIndex, on a follower by asking the leader for the
// index (read-index), then waiting for the local state machine to reach it.
func (a *API) linearize(r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.ReadTimeout)
	defer cancel()
	deadline := time.Now().Add(a.cfg.LeaderWait)
	for {
		_, err := a.node.LinearizableBarrier(ctx)
		var nle *cluster.NotLeaderError
		if !errors.As(err, &nle) || r.Header.Get(wire.HeaderForwarded) != "" {
			return err
		}
		if nle.LeaderHTTPAddr != "" && nle.LeaderID != a.node.ID() {
			leader := nle.LeaderHTTPAddr
			idx, err := a.readIndexes.get(ctx, func(ctx context.Context) (uint64, error) {
				ctx, cancel := context.WithTimeout(ctx, a.cfg.ReadTimeout)
				defer cancel()
				return a.remoteReadIndex(ctx, leader)
			})
			if err != nil {
				return err
			}
			return a.node.WaitApplied(ctx, idx)
		}
		if err := a.pause(ctx, deadline); err != nil {
			return fmt.Errorf("%w: %w", cluster.ErrNoLeader, err)
		}
	}
}

package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/httpapi/wire"
)

const maxControlBody = 64 << 10

func (a *API) statusLeader(w http.ResponseWriter, r *http.Request) error {
	_, addr, _ := a.node.Leader()
	writeJSON(w, http.StatusOK, addr)
	return nil
}

func (a *API) statusPeers(w http.ResponseWriter, r *http.Request) error {
	servers, _, err := a.node.Configuration()
	if err != nil {
		return readError{err}
	}
	peers := []string{}
	for _, s := range servers {
		if s.Voter {
			peers = append(peers, s.RaftAddr)
		}
	}
	writeJSON(w, http.StatusOK, peers)
	return nil
}

func (a *API) statusNode(w http.ResponseWriter, r *http.Request) error {
	s := a.node.Status()
	lc := s.LastContact.Milliseconds()
	if s.LastContact < 0 {
		lc = -1
	}
	writeJSON(w, http.StatusOK, wire.NodeStatus{
		ID: s.ID, RaftAddr: s.RaftAddr, HTTPAddr: s.HTTPAddr, State: s.State, Term: s.Term,
		LeaderID: s.LeaderID, LeaderAddr: s.LeaderAddr, LeaderHTTPAddr: s.LeaderHTTPAddr,
		LastIndex: s.LastIndex, LastLogTerm: s.LastLogTerm, CommitIndex: s.CommitIndex, AppliedIndex: s.AppliedIndex,
		LastContactMs: lc, Voter: s.Voter, Member: s.Member, ReadReady: s.ReadReady,
		SnapshotsTaken: s.SnapshotsTaken, Restores: s.Restores,
		DiskFreeBytes: s.Disk.FreeBytes, DiskReserveBytes: s.Disk.ReserveBytes, DiskLow: s.Disk.Low,
	})
	return nil
}

func (a *API) statusDigest(w http.ResponseWriter, r *http.Request) error {
	d, err := a.node.Store().Digest()
	if err != nil {
		return readError{err}
	}
	writeJSON(w, http.StatusOK, wire.Digest{AppliedIndex: d.AppliedIndex, Digest: d.Digest, KVDigest: d.KVDigest, Keys: d.Keys})
	return nil
}

func (a *API) raftConfiguration(w http.ResponseWriter, r *http.Request) error {
	servers, index, err := a.node.Configuration()
	if err != nil {
		return readError{err}
	}
	out := wire.RaftConfiguration{Servers: []wire.RaftServer{}, Index: index}
	for _, s := range servers {
		out.Servers = append(out.Servers, wire.RaftServer{
			ID: s.ID, Node: s.ID, Address: s.RaftAddr, Leader: s.Leader, Voter: s.Voter,
			ProtocolVersion: "3", HTTPAddr: s.HTTPAddr,
		})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) raftRemovePeer(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	id := q.Get("id")
	if id == "" && q.Get("address") != "" {
		servers, _, err := a.node.Configuration()
		if err != nil {
			return err
		}
		for _, s := range servers {
			if s.RaftAddr == q.Get("address") {
				id = s.ID
			}
		}
		if id == "" {
			return &apiError{status: http.StatusNotFound, outcome: wire.OutcomeFailed, msg: "no server has address " + q.Get("address")}
		}
	}
	if id == "" {
		return badRequest("missing ?id=<server id> (or ?address=<raft address>)")
	}
	return a.remove(w, r, nil, id, false)
}

func (a *API) remove(w http.ResponseWriter, r *http.Request, body []byte, id string, graceful bool) error {
	forwarded, err := a.leaderDo(w, r, body, retryUnknown(func(ctx context.Context) error {
		return a.node.Remove(ctx, id, graceful)
	}))
	if forwarded || err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, true)
	return nil
}

func (a *API) clusterJoin(w http.ResponseWriter, r *http.Request) error {
	var req wire.JoinRequest
	body, err := readJSON(w, r, &req)
	if err != nil {
		return err
	}
	if req.ID == "" || req.RaftAddr == "" {
		return badRequest("join needs ID and RaftAddr")
	}
	forwarded, err := a.leaderDo(w, r, body, retryUnknown(func(ctx context.Context) error {
		return a.node.Join(ctx, cluster.JoinRequest{ID: req.ID, RaftAddr: req.RaftAddr, HTTPAddr: req.HTTPAddr, Fresh: req.Fresh, Auto: req.Auto})
	}))
	if forwarded || err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, true)
	return nil
}

func (a *API) clusterLeave(w http.ResponseWriter, r *http.Request) error {
	var req wire.LeaveRequest
	if _, err := readJSON(w, r, &req); err != nil {
		return err
	}
	if req.ID == "" {
		req.ID = a.node.ID()
	}
	// Forward with the ID filled in: on the leader an empty ID would mean
	// the leader itself.
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	return a.remove(w, r, body, req.ID, true)
}

func (a *API) internalReadIndex(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.ReadTimeout)
	defer cancel()
	idx, err := a.node.ReadIndex(ctx)
	if err != nil {
		return readError{err}
	}
	writeJSON(w, http.StatusOK, wire.ReadIndex{Index: idx})
	return nil
}

// readJSON decodes an optional JSON body (empty = zero value) and returns
// its bytes for forwarding.
func readJSON(w http.ResponseWriter, r *http.Request, v any) ([]byte, error) {
	if r.ContentLength > maxControlBody {
		return nil, errTooLarge // refused before reading: the client need not send the rest
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxControlBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errTooLarge
		}
		return nil, badRequest("read body: %v", err)
	}
	if len(body) == 0 {
		return body, nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return nil, badRequest("invalid JSON body: %v", err)
	}
	return body, nil
}

func (a *API) autopilotHealth(w http.ResponseWriter, r *http.Request) error {
	var h cluster.Health
	forwarded, err := a.leaderDo(w, r, nil, func(context.Context) error {
		var err error
		h, err = a.node.Health()
		return err
	})
	if forwarded || err != nil {
		return readErrorOf(err)
	}
	out := wire.AutopilotHealth{Healthy: h.Healthy, FailureTolerance: h.FailureTolerance, Leader: h.Leader, Servers: []wire.AutopilotServer{}}
	for _, s := range h.Servers {
		status := "alive"
		if !s.Reachable && !s.Leader {
			status = "failed"
		}
		out.Servers = append(out.Servers, wire.AutopilotServer{
			ID: s.ID, Name: s.ID, Address: s.Address, SerfStatus: status, Leader: s.Leader,
			LastContact: s.LastContact.String(), LastContactMs: s.LastContact.Milliseconds(),
			LastTerm: s.LastTerm, LastIndex: s.LastIndex, Healthy: s.Healthy, Voter: s.Voter,
			StableSince: s.StableSince.UTC().Format(time.RFC3339Nano),
			HTTPAddr:    s.HTTPAddr, Reachable: s.Reachable || s.Leader, Lag: s.Lag,
		})
	}
	status := http.StatusOK
	if !h.Healthy {
		status = http.StatusTooManyRequests
	}
	writeJSON(w, status, out)
	return nil
}

func readErrorOf(err error) error {
	if err == nil {
		return nil
	}
	return readError{err}
}

// retryUnknown retries an idempotent membership change whose outcome was
// unknown (leadership lost mid-way, common right after a leadership
// transfer): running it again is safe and gives the client a definite
// answer. A *NotLeaderError ends the loop so leaderDo can forward.
func retryUnknown(op func(ctx context.Context) error) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		var err error
		for attempt := 0; attempt < 3; attempt++ {
			if err = op(ctx); !errors.Is(err, cluster.ErrOutcomeUnknown) || ctx.Err() != nil {
				return err
			}
		}
		return err
	}
}

// health is process liveness for load balancers and orchestrators: it
// answers 200 whenever the process serves HTTP.
func (a *API) health(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "id": a.node.ID()})
	return nil
}

// ready answers 200 only when this node can serve linearizable reads now:
// a leader is known, this node is a member, and either it is the leader
// with its read barrier applied or it is a follower that heard from the
// leader recently and whose state machine is within readyMaxLag entries
// of the commit index it knows. Otherwise 503 with the reason. A node low
// on disk space stays ready (it serves reads; taking every node of a full
// cluster out of rotation would stop reads too): the body's disk_low and
// writes say that it refuses writes.
func (a *API) ready(w http.ResponseWriter, r *http.Request) error {
	s := a.node.Status()
	reason := ""
	switch {
	case !s.Member:
		reason = "not a member of the cluster"
	case s.LeaderID == "":
		reason = "no known leader"
	case s.State == "Leader" && !s.ReadReady:
		reason = "leader has not applied its read barrier yet"
	case s.State != "Leader" && (s.LastContact < 0 || s.LastContact > readyMaxContact):
		reason = "no recent contact with the leader"
	case s.CommitIndex > s.AppliedIndex+readyMaxLag:
		reason = "state machine is catching up"
	}
	body := map[string]any{"ready": reason == "", "id": s.ID, "state": s.State, "leader": s.LeaderID,
		"commit_index": s.CommitIndex, "applied_index": s.AppliedIndex,
		"disk_free_bytes": s.Disk.FreeBytes, "disk_low": s.Disk.Low}
	if s.Disk.Low {
		// Readiness is about serving reads, which a full disk does not
		// stop; the body says that this node refuses writes.
		body["writes"] = "refused: free disk space below the reserve"
	}
	if reason != "" {
		body["reason"] = reason
		w.Header().Set(wire.HeaderOutcome, wire.OutcomeFailed)
		writeJSON(w, http.StatusServiceUnavailable, body)
		return nil
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

const (
	readyMaxContact = 2 * time.Second
	readyMaxLag     = 1000
)

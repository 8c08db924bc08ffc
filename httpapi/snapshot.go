package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/httpapi/wire"
)

// maxSnapshotBody bounds PUT /v1/snapshot.
const maxSnapshotBody = 16 << 30

// snapshotForwardTimeout bounds a restore a follower forwards to the leader:
// the upload, the leader's checks and the install on a quorum.
const snapshotForwardTimeout = 30 * time.Minute

// snapshotSave streams a consistent snapshot of the state (Consul's GET
// /v1/snapshot; the format is raftkv's own framed bbolt image). By default
// it is linearizable: it includes every write acknowledged before the
// request; ?stale takes the answering node's local state as it is.
func (a *API) snapshotSave(w http.ResponseWriter, r *http.Request) error {
	stale, err := query{r.URL.Query()}.flag("stale")
	if err != nil {
		return err
	}
	if !stale {
		if err := a.linearize(r); err != nil {
			return readError{err}
		}
	}
	sn, err := a.node.Store().Snapshot()
	if err != nil {
		return readError{err}
	}
	defer sn.Release()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set(wire.HeaderIndex, strconv.FormatUint(sn.Index(), 10))
	if _, err := sn.WriteTo(w); err != nil {
		// The status line is gone; the client sees a truncated stream,
		// which restore and inspect reject by its checksum.
		a.log.Warn("snapshot stream interrupted", "error", err)
	}
	return nil
}

// snapshotRestore replaces the cluster's whole state with the snapshot in
// the body (Consul's PUT /v1/snapshot). A follower streams it on to the
// leader. A bad snapshot gets 400 and changes nothing.
func (a *API) snapshotRestore(w http.ResponseWriter, r *http.Request) error {
	// A large snapshot takes longer to upload than the server's request read
	// timeout allows: this request alone may take as long as it needs (the
	// client's own timeout, or its disconnect, still ends it).
	if err := http.NewResponseController(w).SetReadDeadline(time.Time{}); err != nil {
		a.log.Debug("snapshot restore: cannot lift the read deadline", "error", err)
	}
	body := http.MaxBytesReader(w, r.Body, maxSnapshotBody)
	deadline := time.Now().Add(a.cfg.LeaderWait)
	for {
		idx, err := a.node.RestoreSnapshot(r.Context(), body)
		var nle *cluster.NotLeaderError
		if !errors.As(err, &nle) || r.Header.Get(wire.HeaderForwarded) != "" {
			if err != nil {
				return err
			}
			w.Header().Set(wire.HeaderIndex, strconv.FormatUint(idx, 10))
			writeJSON(w, http.StatusOK, map[string]uint64{"Index": idx})
			return nil
		}
		if nle.LeaderHTTPAddr != "" && nle.LeaderID != a.node.ID() {
			// Stream straight through: nothing of the body was read yet.
			return a.forwardWithin(w, r, nle.LeaderHTTPAddr, body, r.ContentLength, snapshotForwardTimeout)
		}
		if err := a.pause(r.Context(), deadline); err != nil {
			return fmt.Errorf("%w: %w", cluster.ErrNoLeader, err)
		}
	}
}

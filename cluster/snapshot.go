package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/fsm"
)

// RestoreSnapshot replaces the whole cluster's state with a snapshot stream
// (from SaveSnapshot or GET /v1/snapshot), on the leader. The stream is
// spooled to a temp file in the data dir and verified before Raft sees it,
// so a bad stream changes nothing (ErrBadRequest). raft installs it at a
// new index past its log, restores it here and sends it to every follower.
func (n *Node) RestoreSnapshot(ctx context.Context, r io.Reader) (uint64, error) {
	if n.raft.State() != raft.Leader {
		return 0, n.notLeader()
	}
	f, err := os.CreateTemp(n.cfg.DataDir, "user-restore-*.snap")
	if err != nil {
		return 0, fmt.Errorf("spool snapshot: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	size, err := io.Copy(f, r)
	if err != nil {
		return 0, fmt.Errorf("%w: receive snapshot: %w", ErrBadRequest, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, fmt.Errorf("rewind snapshot: %w", err)
	}
	info, err := fsm.InspectSnapshot(f, n.cfg.DataDir)
	if err != nil {
		if errors.Is(err, fsm.ErrBadSnapshot) {
			return 0, fmt.Errorf("%w: %w", ErrBadRequest, err)
		}
		return 0, fmt.Errorf("verify snapshot: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, fmt.Errorf("rewind snapshot: %w", err)
	}
	// The snapshot carries the data and the metadata of the cluster it was
	// taken from: node addresses and leave markers under "node/". This
	// cluster's own metadata is kept: it is put back right after the restore
	// (a backup restored into another cluster must not send forwarded
	// requests to the old cluster's addresses).
	ownMeta, err := n.store.MetaList(metaClusterPrefix)
	if err != nil {
		return 0, fmt.Errorf("read node metadata before restore: %w", err)
	}
	n.log.Warn("restoring the cluster from a snapshot", "keys", info.Keys, "source_index", info.AppliedIndex, "bytes", size)
	if err := n.raft.Restore(&raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Size: size}, f, n.cfg.ApplyTimeout); err != nil {
		return 0, n.classifyApplyError(fmt.Errorf("raft restore: %w", err))
	}
	if err := n.reinstateMeta(ctx, ownMeta); err != nil {
		return 0, fmt.Errorf("restored, but putting back this cluster's node metadata failed (restart the nodes to re-register): %w", err)
	}
	// raft ends a restore with a no-op entry the state machine never sees;
	// a command of ours moves the applied index past it, so reads that
	// wait for the commit index do not wait for the next write.
	res, err := n.Apply(ctx, fsm.Command{Op: fsm.OpNoop})
	if err != nil {
		return 0, fmt.Errorf("barrier after restore: %w", err)
	}
	return res.Index, nil
}

// metaClusterPrefix holds the cluster's own metadata (metaNodePrefix,
// metaLeftPrefix): it belongs to the running cluster, not to a backup.
const metaClusterPrefix = "node/"

// reinstateMeta makes the "node/" metadata equal to want again after a
// restore replaced it.
func (n *Node) reinstateMeta(ctx context.Context, want map[string][]byte) error {
	got, err := n.store.MetaList(metaClusterPrefix)
	if err != nil {
		return fmt.Errorf("read restored node metadata: %w", err)
	}
	for k, v := range want {
		if cur, ok := got[k]; ok && string(cur) == string(v) {
			continue
		}
		if _, err := n.Apply(ctx, fsm.Command{Op: fsm.OpSetMeta, Key: k, Value: v}); err != nil {
			return fmt.Errorf("set %s: %w", k, err)
		}
	}
	for k := range got {
		if _, ok := want[k]; ok {
			continue
		}
		if _, err := n.Apply(ctx, fsm.Command{Op: fsm.OpDeleteMeta, Key: k}); err != nil {
			return fmt.Errorf("delete %s: %w", k, err)
		}
	}
	return nil
}

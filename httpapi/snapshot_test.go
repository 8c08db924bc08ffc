package httpapi_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/testcluster"
)

// TestSnapshotSaveRestoreRoundTrip: a backup taken through a follower,
// restored later through another follower, brings every node back to the
// backed-up state; writes and restarts afterwards behave; a corrupt backup
// is refused and changes nothing.
func TestSnapshotSaveRestoreRoundTrip(t *testing.T) {
	c := testcluster.Start(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l := c.WaitLeader(5 * time.Second)
	lc := client.New(l.HTTPAddr, 10*time.Second)
	const n = 1000
	for i := 0; i < n; i++ {
		if _, _, err := lc.Put(ctx, fmt.Sprintf("snap/%04d", i), []byte(fmt.Sprint(i)), client.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	before, err := lc.Digest(ctx)
	if err != nil {
		t.Fatal(err)
	}

	var backup bytes.Buffer
	f := c.Follower()
	idx, size, err := client.New(f.HTTPAddr, 10*time.Second).SaveSnapshot(ctx, &backup, false)
	if err != nil || idx == 0 || size == 0 {
		t.Fatalf("save: index %d, %d bytes, %v", idx, size, err)
	}

	// Change everything after the backup.
	if _, err := lc.Delete(ctx, "snap/", true, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := lc.Put(ctx, "after-backup", []byte("x"), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}

	// A corrupt backup is refused with 400, and nothing changes.
	bad := bytes.Clone(backup.Bytes())
	bad[len(bad)/2] ^= 0xff
	var other *testcluster.Node
	for _, nd := range c.Nodes {
		if nd != l && nd != f {
			other = nd
		}
	}
	oc := client.New(other.HTTPAddr, 10*time.Second)
	_, err = oc.RestoreSnapshot(ctx, bytes.NewReader(bad), int64(len(bad)))
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != http.StatusBadRequest {
		t.Fatalf("restore of a corrupt snapshot: %v, want HTTP 400", err)
	}
	if _, err := lc.Get(ctx, "after-backup", client.Default); err != nil {
		t.Fatalf("state changed by a refused restore: %v", err)
	}

	// The real restore, through a follower.
	ridx, err := oc.RestoreSnapshot(ctx, bytes.NewReader(backup.Bytes()), int64(backup.Len()))
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if _, err := lc.Get(ctx, "after-backup", client.Default); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("after restore, a key written after the backup: %v, want not found", err)
	}
	for _, nd := range c.Nodes {
		if err := testcluster.Poll(20*time.Second, func() error {
			d, err := client.New(nd.HTTPAddr, 5*time.Second).Digest(ctx)
			if err != nil {
				return err
			}
			if d.Digest != before.Digest || d.Keys != before.Keys || d.AppliedIndex < ridx {
				return fmt.Errorf("%s digest %+v, want %s with %d keys at index >= %d", nd.ID, d, before.Digest, before.Keys, ridx)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	// Linearizable reads answer at once (no hang behind raft's own no-op),
	// and writes after the restore replicate and survive a restart.
	rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
	p, err := client.New(f.HTTPAddr, 3*time.Second).Get(rctx, "snap/0007", client.Default)
	rcancel()
	if err != nil || string(p.Value) != "7" {
		t.Fatalf("read after restore: %q %v", p.Value, err)
	}
	if _, _, err := lc.Put(ctx, "post-restore", []byte("y"), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	fi := c.Index(f)
	c.StopNode(fi)
	c.StartNode(fi)
	if err := testcluster.Poll(20*time.Second, func() error {
		p, err := client.New(f.HTTPAddr, 2*time.Second).Get(ctx, "post-restore", client.Stale)
		if err != nil {
			return err
		}
		if string(p.Value) != "y" {
			return fmt.Errorf("post-restore = %q", p.Value)
		}
		keys, err := client.New(f.HTTPAddr, 2*time.Second).Keys(ctx, "snap/", "", client.Stale)
		if err != nil || len(keys) != n {
			return fmt.Errorf("restarted follower has %d snap keys (%v), want %d", len(keys), err, n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

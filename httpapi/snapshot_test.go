package httpapi_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/httpapi/wire"
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

// TestSnapshotRestoreRejectsDamagedStreams: PUT /v1/snapshot with a
// truncated, bit-flipped, foreign or structurally damaged stream, through
// the leader and through a follower (which forwards it), answers 400 with a
// JSON error naming the problem; every node keeps exactly its data, and the
// cluster still takes writes and serves linearizable reads afterwards.
func TestSnapshotRestoreRejectsDamagedStreams(t *testing.T) {
	c := testcluster.Start(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	l := c.WaitLeader(5 * time.Second)
	lc := client.New(l.HTTPAddr, 10*time.Second)
	for i := range 100 {
		if _, _, err := lc.Put(ctx, fmt.Sprintf("keep/%03d", i), []byte(fmt.Sprint(i)), client.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var good bytes.Buffer
	if _, _, err := lc.SaveSnapshot(ctx, &good, false); err != nil {
		t.Fatal(err)
	}
	g := good.Bytes()
	const hdr, trailer = 16, sha256.Size
	flip := func(i int) []byte {
		b := bytes.Clone(g)
		b[i] ^= 0x04
		return b
	}
	frame := func(image []byte) []byte {
		b := append(bytes.Clone(g[:8]), binary.BigEndian.AppendUint64(nil, uint64(len(image)))...)
		b = append(b, image...)
		sum := sha256.Sum256(image)
		return append(b, sum[:]...)
	}
	// A correctly framed and checksummed image whose root bucket page (named
	// by meta page 0, little-endian on every platform raftkv runs on) claims
	// to be another page: bbolt would panic on it after the restore.
	image := bytes.Clone(g[hdr : len(g)-trailer])
	pageSize := binary.LittleEndian.Uint32(image[24:])
	root := binary.LittleEndian.Uint64(image[32:])
	binary.LittleEndian.PutUint64(image[root*uint64(pageSize):], root+1)

	damaged := []struct {
		name, want string
		body       []byte
	}{
		{"empty", "bad snapshot", nil},
		{"garbage", "bad snapshot", []byte("this is not a snapshot at all, just some text")},
		{"header only", "bad snapshot", g[:hdr]},
		{"truncated in the header", "bad snapshot", g[:10]},
		{"truncated image", "truncated", g[:len(g)/2]},
		{"missing checksum", "bad snapshot", g[:len(g)-trailer]},
		{"truncated checksum", "bad snapshot", g[:len(g)-1]},
		{"trailing byte", "data after the checksum", append(bytes.Clone(g), 'x')},
		{"flipped magic", "not a raftkv snapshot", flip(0)},
		{"flipped length", "bad snapshot", flip(12)},
		{"flipped image byte", "checksum mismatch", flip(hdr + len(g)/3)},
		{"flipped checksum", "checksum mismatch", flip(len(g) - 1)},
		{"framed garbage", "bad snapshot", frame(bytes.Repeat([]byte("garbage!"), 2048))},
		{"damaged page structure", "identifies as page", frame(image)},
	}
	before, err := lc.Digest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f := c.Follower()
	for _, tc := range damaged {
		for _, via := range []*testcluster.Node{l, f} {
			t.Run(strings.ReplaceAll(tc.name, " ", "_")+"/via_"+via.ID, func(t *testing.T) {
				req, err := http.NewRequestWithContext(ctx, http.MethodPut, via.URL()+"/v1/snapshot", bytes.NewReader(tc.body))
				if err != nil {
					t.Fatal(err)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				var e wire.Error
				if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
					t.Fatalf("status %d, body is not JSON: %v", resp.StatusCode, err)
				}
				if resp.StatusCode != http.StatusBadRequest || e.Outcome != wire.OutcomeFailed || !strings.Contains(e.Error, tc.want) {
					t.Fatalf("status %d, error %q (outcome %q); want 400, an error containing %q, outcome failed", resp.StatusCode, e.Error, e.Outcome, tc.want)
				}
			})
		}
	}
	// Nothing changed anywhere (a digest is read locally, so a follower may
	// still be applying the last writes: it must reach the same state), and
	// the cluster still writes and reads.
	for _, nd := range c.Nodes {
		if err := testcluster.Poll(10*time.Second, func() error {
			d, err := client.New(nd.HTTPAddr, 5*time.Second).Digest(ctx)
			if err != nil {
				return err
			}
			if d.Digest != before.Digest || d.Keys != before.Keys {
				return fmt.Errorf("%s after the refused restores: digest %s with %d keys, want %s with %d", nd.ID, d.Digest, d.Keys, before.Digest, before.Keys)
			}
			return nil
		}); err != nil {
			t.Error(err)
		}
	}
	for _, nd := range c.Nodes {
		nc := client.New(nd.HTTPAddr, 5*time.Second)
		if _, _, err := nc.Put(ctx, "canary/"+nd.ID, []byte("alive"), client.PutOptions{}); err != nil {
			t.Fatalf("write through %s after the refused restores: %v", nd.ID, err)
		}
		p, err := nc.Get(ctx, "keep/042", client.Consistent)
		if err != nil || string(p.Value) != "42" {
			t.Fatalf("linearizable read on %s: %q, %v", nd.ID, p.Value, err)
		}
	}
}

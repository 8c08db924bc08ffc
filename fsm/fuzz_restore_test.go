package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// fuzzSnapshot is a valid snapshot stream and the state it holds.
type fuzzSnapshot struct {
	name   string
	stream []byte
	digest Digest
}

// image returns the bbolt image inside a snapshot stream.
func (s fuzzSnapshot) image() []byte {
	return s.stream[snapshotHeaderSize : len(s.stream)-snapshotTrailerSize]
}

// frameImage wraps image in a correct frame: header, image, SHA-256.
func frameImage(image []byte) []byte {
	out := make([]byte, 0, snapshotHeaderSize+len(image)+snapshotTrailerSize)
	out = append(out, snapshotMagic[:]...)
	out = append(out, be64(uint64(len(image)))...)
	out = append(out, image...)
	return append(out, sha(image)...)
}

var updateFuzzSnapshots = flag.Bool("update-fuzz-snapshots", false, "rewrite the seed snapshots in testdata/fuzz/snapshots")

// fuzzSnapshotDir holds the seed snapshots of FuzzRestoreSnapshot. They are
// files, not built at run time: the fuzzing coordinator sends seeds to its
// workers, which check accepted streams against their own copies, so every
// process must have the same bytes, and bbolt does not write the same pages
// twice for the same commands (its page allocation order varies from run
// to run). Rebuild them with -args -update-fuzz-snapshots.
const fuzzSnapshotDir = "testdata/fuzz/snapshots"

// fuzzSnapshots returns the seed snapshots: an empty store, a few keys with
// metadata, and a store large enough for branch pages, overflow pages and
// freed pages (deletes), each with the digest of its state.
func fuzzSnapshots(tb testing.TB) []fuzzSnapshot {
	tb.Helper()
	var many []Command
	for i := range 300 {
		many = append(many, set(fmt.Sprintf("k/%04d", i), string(bytes.Repeat([]byte{byte(i)}, 40))))
	}
	many = append(many, Command{Op: OpSet, Key: "big", Value: bytes.Repeat([]byte("overflow"), 1500)})
	builds := []struct {
		name    string
		batches [][]Command
	}{
		{"empty", nil},
		{"few-keys", [][]Command{{
			set("a", "1"), set("b/c", "two"), set("b/d", ""),
			{Op: OpSetMeta, Key: "node/http/n1", Value: []byte("127.0.0.1:8501")},
			{Op: OpSet, Key: "\xff\x00bin", Value: []byte{0, 1, 2}, Flags: 1<<64 - 1},
		}}},
		{"pages", [][]Command{many, {{Op: OpDeletePrefix, Key: "k/01"}}}},
	}
	var out []fuzzSnapshot
	for _, b := range builds {
		path := filepath.Join(fuzzSnapshotDir, b.name+".snap")
		if *updateFuzzSnapshots {
			if err := os.MkdirAll(fuzzSnapshotDir, 0o755); err != nil {
				tb.Fatal(err)
			}
			if err := os.WriteFile(path, buildSnapshot(tb, b.batches...), 0o644); err != nil {
				tb.Fatal(err)
			}
		}
		stream, err := os.ReadFile(path)
		if err != nil {
			tb.Fatalf("read seed snapshot (rebuild with -args -update-fuzz-snapshots): %v", err)
		}
		s := openTestStore(tb)
		if err := s.Restore(bytes.NewReader(stream)); err != nil {
			tb.Fatalf("seed snapshot %s does not restore: %v", path, err)
		}
		out = append(out, fuzzSnapshot{name: b.name, stream: stream, digest: mustDigest(tb, s)})
	}
	return out
}

// buildSnapshot builds a snapshot stream the way Store.Snapshot does:
// Tx.WriteTo of a bbolt file with raftkv's buckets (NoFreelistSync), written
// by the real apply code, each batch one transaction.
func buildSnapshot(tb testing.TB, batches ...[]Command) []byte {
	tb.Helper()
	db, err := bbolt.Open(filepath.Join(tb.TempDir(), "seed.db"), 0o600, &bbolt.Options{NoFreelistSync: true})
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	idx := uint64(0)
	for _, batch := range batches {
		err := db.Update(func(tx *bbolt.Tx) error {
			w := writer{kv: tx.Bucket(bucketKV), meta: tx.Bucket(bucketMeta)}
			for _, c := range batch {
				idx++
				if _, err := w.apply(idx, c); err != nil {
					return err
				}
			}
			return putApplied(tx, idx)
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	var image bytes.Buffer
	if err := db.View(func(tx *bbolt.Tx) error { _, err := tx.WriteTo(&image); return err }); err != nil {
		tb.Fatal(err)
	}
	return frameImage(image.Bytes())
}

// TestFuzzSnapshots: the seed snapshots restore, a snapshot of the restored
// store is the same stream byte for byte (so an accepted raw stream can be
// compared with them), and the "pages" one has the shape the malformed
// images are cut from.
func TestFuzzSnapshots(t *testing.T) {
	for _, sn := range fuzzSnapshots(t) {
		s := openTestStore(t)
		if err := s.Restore(bytes.NewReader(sn.stream)); err != nil {
			t.Fatal(err)
		}
		if again, _ := snapshotBytes(t, s); !bytes.Equal(again, sn.stream) {
			t.Errorf("snapshot %q: Store.Snapshot of the restored store differs from the stream", sn.name)
		}
		t.Logf("%s: %d bytes, %d keys", sn.name, len(sn.stream), sn.digest.Keys)
	}
	if len(malformedImages(t)) == 0 {
		t.Fatal("no malformed images")
	}
}

// FuzzRestoreSnapshot restores arbitrary bytes into a store that holds a
// known state. The fuzz input is either a whole stream (reframe false: the
// framing and the checksum are under attack) or a bbolt image that the
// target wraps in a correct frame (reframe true: the checksum is right, so
// the image checks are under attack).
//
// Properties:
//   - InspectSnapshot never panics and agrees with Restore on whether the
//     stream is acceptable.
//   - A failed Restore returns ErrBadSnapshot, leaves the previous state
//     exactly as it was (digest and applied index), still readable and
//     writable, and leaves no temporary file behind.
//   - A raw stream is accepted only when it is byte for byte one of the
//     valid snapshots, and the state is then that snapshot's.
//   - An accepted reframed image is a usable store: every read, a snapshot
//     of it and a write work, with no error, panic or crash.
//
// Run it (one fuzzer at a time on a shared machine):
//
//	go test -tags hashicorpmetrics -run '^$' -fuzz FuzzRestoreSnapshot -fuzztime 5m -parallel 1 ./fsm/
func FuzzRestoreSnapshot(f *testing.F) {
	snaps := fuzzSnapshots(f)
	for _, sn := range snaps {
		good := sn.stream
		f.Add(false, good)
		f.Add(true, sn.image())
		// Truncations at the header, inside the image, and inside the checksum.
		for _, n := range []int{0, 7, snapshotHeaderSize, snapshotHeaderSize + 4096, len(good) / 2, len(good) - snapshotTrailerSize, len(good) - 1} {
			f.Add(false, bytes.Clone(good[:n]))
		}
		// Bit flips in the magic, the version, the length, a meta page, a data page and the checksum.
		for _, i := range []int{0, 7, 8, 15, snapshotHeaderSize + 20, snapshotHeaderSize + 3*4096 + 100, len(good) - 1} {
			b := bytes.Clone(good)
			b[i] ^= 0x10
			f.Add(false, b)
		}
		f.Add(false, append(bytes.Clone(good), 0)) // data after the checksum
	}
	good := snaps[1].stream
	withSize := func(n uint64) []byte { return append(append(bytes.Clone(good[:8]), be64(n)...), good[16:]...) }
	f.Add(false, withSize(0))
	f.Add(false, withSize(1))
	f.Add(false, withSize(1<<63))             // negative as int64
	f.Add(false, withSize(math.MaxUint64))    // -1 as int64
	f.Add(false, withSize(uint64(len(good)))) // larger than the image: eats the checksum
	f.Add(false, frameImage(nil))
	f.Add(false, frameImage([]byte("not a bbolt file")))
	f.Add(true, emptyBolt(f))
	for _, img := range malformedImages(f) {
		f.Add(true, img)
	}
	f.Add(true, bytes.Repeat([]byte{0}, 4*4096))

	valid := map[string]Digest{}
	for _, sn := range snaps {
		valid[string(sn.stream)] = sn.digest
	}
	// The baseline state every iteration starts from.
	baseline := snaps[1]
	s := openTestStore(f)
	if err := s.Restore(bytes.NewReader(baseline.stream)); err != nil {
		f.Fatalf("restore the baseline: %v", err)
	}
	inspectDir := f.TempDir()

	f.Fuzz(func(t *testing.T, reframe bool, data []byte) {
		defer hangWatchdog(t, 20*time.Second)()
		in := data
		if reframe {
			in = frameImage(data)
		}
		before := mustDigest(t, s)

		info, inspectErr := InspectSnapshot(bytes.NewReader(in), inspectDir)
		if inspectErr != nil && !errors.Is(inspectErr, ErrBadSnapshot) {
			t.Fatalf("InspectSnapshot: %v, want nil or an error wrapping ErrBadSnapshot", inspectErr)
		}
		err := s.Restore(bytes.NewReader(in))
		if (err == nil) != (inspectErr == nil) {
			t.Fatalf("Restore and InspectSnapshot disagree: restore %v, inspect %v", err, inspectErr)
		}
		checkNoTempFiles(t, s.Path())
		checkNoTempFiles(t, filepath.Join(inspectDir, "x"))

		if err != nil {
			if !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("Restore: %v, want an error wrapping ErrBadSnapshot", err)
			}
			if got := mustDigest(t, s); got != before {
				t.Fatalf("failed restore changed the state: digest %+v, want %+v", got, before)
			}
			if got := s.AppliedIndex(); got != before.AppliedIndex {
				t.Fatalf("failed restore changed AppliedIndex() to %d, want %d", got, before.AppliedIndex)
			}
			checkWritable(t, s)
			return
		}

		if !reframe {
			want, ok := valid[string(in)]
			if !ok {
				t.Fatalf("Restore accepted a %d-byte stream that is none of the valid snapshots", len(in))
			}
			if got := mustDigest(t, s); got != want {
				t.Fatalf("restored digest %+v, want %+v", got, want)
			}
		}
		checkUsable(t, s, info)
		// Back to the baseline for the next input.
		if err := s.Restore(bytes.NewReader(baseline.stream)); err != nil {
			t.Fatalf("restore the baseline again: %v", err)
		}
	})
}

// hangWatchdog crashes the process when the input takes longer than d: the
// fuzzer only records inputs that fail or crash, and a hang is a bug too
// (the node would stop applying). Call the returned func when done.
func hangWatchdog(t *testing.T, d time.Duration) (stop func()) {
	name := t.Name()
	timer := time.AfterFunc(d, func() {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		panic(fmt.Sprintf("%s: input still running after %s (hang)\n%s", name, d, buf))
	})
	return func() { timer.Stop() }
}

// checkNoTempFiles fails if a restore or inspect temporary file is left next
// to path.
func checkNoTempFiles(t *testing.T, path string) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != filepath.Base(path) {
			t.Fatalf("file %s left behind in %s", e.Name(), filepath.Dir(path))
		}
	}
}

// checkWritable writes a key past the applied index and reads it back, then
// deletes it again so the data is unchanged.
func checkWritable(t *testing.T, s *Store) {
	t.Helper()
	idx := s.AppliedIndex()
	if idx >= math.MaxUint64-2 {
		return // no index left to write at: legal for a crafted image, nothing to check
	}
	res := mustApply(t, s, logsFrom(idx+1, set("fuzz/canary", "alive"), Command{Op: OpDelete, Key: "fuzz/canary"})...)
	if !res[0].OK || !res[1].OK {
		t.Fatalf("canary write: results %+v, want OK", res)
	}
	if _, ok := mustGet(t, s, "fuzz/canary"); ok {
		t.Fatal("canary still there after its delete")
	}
	mustApply(t, s, logsFrom(idx+3, set("fuzz/canary", "alive"))...)
	if e, ok := mustGet(t, s, "fuzz/canary"); !ok || string(e.Value) != "alive" {
		t.Fatalf("canary read back: %+v %v", e, ok)
	}
	mustApply(t, s, logsFrom(idx+4, Command{Op: OpDelete, Key: "fuzz/canary"})...)
}

// checkUsable exercises every read of an accepted state, a snapshot of it and
// a write; info is what InspectSnapshot said about it.
func checkUsable(t *testing.T, s *Store, info SnapshotInfo) {
	t.Helper()
	st, err := s.Stats()
	if err != nil {
		t.Fatalf("Stats after restore: %v", err)
	}
	if st.Keys != info.Keys || st.AppliedIndex != info.AppliedIndex {
		t.Fatalf("restored %d keys at index %d, InspectSnapshot said %d at %d", st.Keys, st.AppliedIndex, info.Keys, info.AppliedIndex)
	}
	entries := mustList(t, s, "")
	if len(entries) != st.Keys {
		t.Fatalf("List has %d entries, Stats %d keys", len(entries), st.Keys)
	}
	for _, e := range entries {
		got, ok := mustGet(t, s, e.Key)
		if !ok || !entriesEqual([]Entry{got}, []Entry{e}) {
			t.Fatalf("Get(%q) = %+v %v, List had %+v", e.Key, got, ok, e)
		}
	}
	if _, err := s.Keys("", "/"); err != nil {
		t.Fatalf("Keys after restore: %v", err)
	}
	if _, err := s.MetaList(""); err != nil {
		t.Fatalf("MetaList after restore: %v", err)
	}
	d := mustDigest(t, s)
	again, _ := snapshotBytes(t, s)
	other := openTestStore(t)
	if err := other.Restore(bytes.NewReader(again)); err != nil {
		t.Fatalf("a snapshot of the restored state does not restore: %v", err)
	}
	if got := mustDigest(t, other); got != d {
		t.Fatalf("snapshot of the restored state restores to %+v, want %+v", got, d)
	}
	checkWritable(t, s)
}

// Test-side access to a bbolt image's pages, to craft damaged images. The
// layout (bbolt's file format, native byte order): a page starts with id
// u64, flags u16, count u16, overflow u32; a meta page continues with magic,
// version, page size, flags (u32 each), root bucket (pgid, sequence),
// freelist pgid, high-water pgid, txid and an FNV-64a checksum (u64 each).
// Branch elements are pos u32, ksize u32, pgid u64; leaf elements flags,
// pos, ksize, vsize (u32 each); pos counts from the element itself.
type testImage struct {
	b        []byte
	pageSize int
}

func newTestImage(img []byte) *testImage {
	return &testImage{b: bytes.Clone(img), pageSize: int(binary.NativeEndian.Uint32(img[24:]))}
}

func (im *testImage) page(id uint64) []byte { return im.b[int(id)*im.pageSize:] }

func (im *testImage) flags(id uint64) uint16 { return binary.NativeEndian.Uint16(im.page(id)[8:]) }
func (im *testImage) count(id uint64) int    { return int(binary.NativeEndian.Uint16(im.page(id)[10:])) }

// rootBucketPage is the page of the root bucket (the one holding kv, meta, sys).
func (im *testImage) rootBucketPage() uint64 { return binary.NativeEndian.Uint64(im.b[32:]) }

// leafElem returns the offset (in the image) of element i of leaf page id.
func (im *testImage) elem(id uint64, i int) int { return int(id)*im.pageSize + 16 + 16*i }

// leafKV returns the key and value of leaf element i of page id.
func (im *testImage) leafKV(id uint64, i int) (k, v []byte) {
	e := im.elem(id, i)
	pos, ks, vs := binary.NativeEndian.Uint32(im.b[e+4:]), binary.NativeEndian.Uint32(im.b[e+8:]), binary.NativeEndian.Uint32(im.b[e+12:])
	k = im.b[e+int(pos) : e+int(pos)+int(ks)]
	return k, im.b[e+int(pos)+int(ks) : e+int(pos)+int(ks)+int(vs)]
}

// bucketRoot returns the root page of the top-level bucket name (0 when it
// is inline).
func (im *testImage) bucketRoot(tb testing.TB, name string) uint64 {
	root := im.rootBucketPage()
	for i := range im.count(root) {
		if k, v := im.leafKV(root, i); string(k) == name {
			return binary.NativeEndian.Uint64(v)
		}
	}
	tb.Fatalf("no bucket %s in the image", name)
	return 0
}

// setBranchChild points element i of branch page id at child.
func (im *testImage) setBranchChild(id uint64, i int, child uint64) {
	binary.NativeEndian.PutUint64(im.b[im.elem(id, i)+8:], child)
}

func (im *testImage) branchChild(id uint64, i int) uint64 {
	return binary.NativeEndian.Uint64(im.b[im.elem(id, i)+8:])
}

// reseal recomputes the checksum of meta page id after an edit.
func (im *testImage) reseal(id uint64) {
	m := im.page(id)[16:]
	h := fnv.New64a()
	h.Write(m[:56])
	binary.NativeEndian.PutUint64(m[56:], h.Sum64())
}

// malformedImages returns correctly framed, correctly checksummed snapshot
// images whose bbolt page structure is damaged in ways bbolt does not check
// and that crashed a node before checkImageStructure: Restore accepted them
// and the reopened store panicked in bbolt's freelist rebuild (or would
// recurse forever on a cycle), with the bad file already in place.
func malformedImages(tb testing.TB) map[string][]byte {
	tb.Helper()
	src := newTestImage(fuzzSnapshots(tb)[2].image())
	kv := src.bucketRoot(tb, "kv")
	if src.flags(kv) != 0x01 || src.count(kv) < 3 {
		tb.Fatalf("kv root page %d: flags %#x, %d children; want a branch page with at least 3", kv, src.flags(kv), src.count(kv))
	}
	leaf := src.branchChild(kv, 1)
	hwm := binary.NativeEndian.Uint64(src.b[56:])
	edit := func(fn func(im *testImage)) []byte {
		im := newTestImage(src.b)
		fn(im)
		return im.b
	}
	leafElem := func(im *testImage, i, field int) []byte { return im.b[im.elem(leaf, i)+4*field:] }
	return map[string][]byte{
		"cycle":                 edit(func(im *testImage) { im.setBranchChild(kv, 1, kv) }),
		"two parents":           edit(func(im *testImage) { im.setBranchChild(kv, 2, leaf) }),
		"child past the end":    edit(func(im *testImage) { im.setBranchChild(kv, 1, hwm+5) }),
		"child is a meta page":  edit(func(im *testImage) { im.setBranchChild(kv, 1, 1) }),
		"child huge":            edit(func(im *testImage) { im.setBranchChild(kv, 1, 1<<62) }),
		"page id mismatch":      edit(func(im *testImage) { binary.NativeEndian.PutUint64(im.page(leaf), leaf+1) }),
		"bad page type":         edit(func(im *testImage) { binary.NativeEndian.PutUint16(im.page(leaf)[8:], 0x10) }),
		"empty branch":          edit(func(im *testImage) { binary.NativeEndian.PutUint16(im.page(kv)[10:], 0) }),
		"count past the page":   edit(func(im *testImage) { binary.NativeEndian.PutUint16(im.page(leaf)[10:], 0xfff0) }),
		"overflow past the end": edit(func(im *testImage) { binary.NativeEndian.PutUint32(im.page(leaf)[12:], 1<<30) }),
		"key past the page":     edit(func(im *testImage) { binary.NativeEndian.PutUint32(leafElem(im, 0, 1), 1<<31) }),
		"value past the page":   edit(func(im *testImage) { binary.NativeEndian.PutUint32(leafElem(im, 0, 3), 1<<20) }),
		"empty key":             edit(func(im *testImage) { binary.NativeEndian.PutUint32(leafElem(im, 0, 2), 0) }),
		"keys out of order": edit(func(im *testImage) {
			k, _ := im.leafKV(leaf, 1)
			k[len(k)-1] = 0 // now sorts before element 0
		}),
		"key outside the parent's range": edit(func(im *testImage) {
			k, _ := im.leafKV(leaf, 0)
			k[0] = 0xff // sorts after the next branch key
		}),
		"nested bucket in kv": edit(func(im *testImage) { binary.NativeEndian.PutUint32(leafElem(im, 0, 0), 1) }),
		"bad entry encoding": edit(func(im *testImage) {
			_, v := im.leafKV(leaf, 0)
			v[0] = 9 // entry version
		}),
		"meta pages disagree": edit(func(im *testImage) {
			binary.NativeEndian.PutUint64(im.page(1)[16+16:], kv) // meta 1's root bucket
			im.reseal(1)
		}),
		"high-water mark past the file": edit(func(im *testImage) {
			for _, id := range []uint64{0, 1} {
				binary.NativeEndian.PutUint64(im.page(id)[16+40:], hwm+1)
				im.reseal(id)
			}
		}),
	}
}

// TestRestoreRejectsMalformedImage: every damaged image is refused by
// Restore and InspectSnapshot with ErrBadSnapshot, and the store keeps its
// state and keeps working.
func TestRestoreRejectsMalformedImage(t *testing.T) {
	for name, img := range malformedImages(t) {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			stream := frameImage(img)
			if _, err := InspectSnapshot(bytes.NewReader(stream), t.TempDir()); !errors.Is(err, ErrBadSnapshot) {
				t.Errorf("InspectSnapshot: %v, want ErrBadSnapshot", err)
			}
			s := openTestStore(t)
			mustApply(t, s, logsFrom(1, set("old", "state"))...)
			before := mustDigest(t, s)
			err := s.Restore(bytes.NewReader(stream))
			if !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("Restore: %v, want ErrBadSnapshot", err)
			}
			t.Logf("refused: %v", err)
			if got := mustDigest(t, s); got != before {
				t.Errorf("digest %+v after a refused restore, want %+v", got, before)
			}
			checkWritable(t, s)
			checkNoTempFiles(t, s.Path())
		})
	}
}

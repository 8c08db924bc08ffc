package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
)

// checkImageStructure verifies the page structure of a bbolt image before
// bbolt opens it. bbolt trusts its file: it follows page ids through its
// mmap without bounds checks, recurses through the page tree without a
// cycle check, and when it is opened read-write with NoFreelistSync (as the
// live store is) it rebuilds the freelist by walking every page in a
// goroutine of its own, panicking on the first inconsistency. A snapshot
// image whose checksum is right but whose pages are not (crafted, or
// written by a buggy or foreign tool) would therefore pass a shallow check
// and then crash the node when the restored store is opened or first
// written, for good, because the file is already in place. This check reads
// the file with ReadAt only (no mmap, no bbolt) and rejects such an image.
//
// It accepts exactly what bbolt's Tx.WriteTo produces and bbolt's own
// consistency check (Tx.Check) would pass:
//   - two valid meta pages (magic, version, FNV-64a checksum) that agree on
//     the page size, root, freelist and high-water mark, as WriteTo writes
//     them; the high-water mark fits in the file;
//   - every page reachable from the root is in bounds, identifies itself by
//     its own id, is a branch or a leaf page, is referenced once (so no
//     cycles), has its elements, keys and values inside the page, non-empty
//     keys in strictly increasing order within the bounds its parents set;
//     branch pages are not empty and the tree is at most maxTreeDepth deep;
//   - bucket values are well formed (inline buckets included), nested at
//     most maxBucketDepth deep;
//   - a synced freelist, if any, is a freelist page in bounds whose ids are
//     in range, distinct and not reachable.
//
// Errors describe the first problem found.
func checkImageStructure(r io.ReaderAt, size int64) error {
	c := &imageChecker{r: r, size: size}
	return c.check()
}

// Limits of the structure check: far above anything bbolt writes for a
// raftkv store (a page holds at least two elements, so a tree of depth 64
// would need 2^63 keys; raftkv nests no buckets; a page spans at most a
// few elements of at most MaxKeySize+MaxValueSize bytes) and low enough to
// bound the check's stack and memory.
const (
	maxTreeDepth   = 64
	maxBucketDepth = 8
	maxPageSpan    = 16 << 20
)

// bbolt's on-disk constants.
const (
	boltMagic          = 0xED0CDAED
	boltVersion        = 2
	boltPageHeader     = 16 // id u64, flags u16, count u16, overflow u32
	boltElemSize       = 16 // branch: pos, ksize u32, pgid u64; leaf: flags, pos, ksize, vsize u32
	boltBucketHeader   = 16 // root pgid u64, sequence u64
	boltMetaSize       = 56 // magic .. txid, before the checksum
	boltBranchPage     = 0x01
	boltLeafPage       = 0x02
	boltMetaPage       = 0x04
	boltFreelistPage   = 0x10
	boltBucketLeafFlag = 0x01
	boltNoFreelist     = ^uint64(0)
)

// boltOrder is the byte order of bbolt files: the machine's own.
var boltOrder = binary.NativeEndian

type boltMeta struct {
	pageSize uint32
	flags    uint32
	root     uint64
	freelist uint64
	hwm      uint64 // first page id past the end of the data
}

type imageChecker struct {
	r        io.ReaderAt
	size     int64
	pageSize uint64
	hwm      uint64
	seen     []uint64 // bitmap of page ids referenced so far
}

func (c *imageChecker) check() error {
	m0, err := c.readMeta(0, 0)
	if err != nil {
		return fmt.Errorf("meta page 0: %w", err)
	}
	c.pageSize = uint64(m0.pageSize)
	m1, err := c.readMeta(1, int64(c.pageSize))
	if err != nil {
		return fmt.Errorf("meta page 1: %w", err)
	}
	if m0 != m1 {
		return fmt.Errorf("meta pages disagree: %+v vs %+v", m0, m1)
	}
	if m0.hwm < 3 || m0.hwm > uint64(c.size)/c.pageSize {
		return fmt.Errorf("high-water mark %d pages does not fit a %d-byte image of %d-byte pages", m0.hwm, c.size, c.pageSize)
	}
	c.hwm = m0.hwm
	c.seen = make([]uint64, (c.hwm+63)/64)
	c.mark(0)
	c.mark(1)
	var freeIDs []uint64
	if m0.freelist != boltNoFreelist {
		if freeIDs, err = c.readFreelist(m0.freelist); err != nil {
			return fmt.Errorf("freelist page %d: %w", m0.freelist, err)
		}
	}
	if err := c.checkBucketTree(m0.root, 0); err != nil {
		return fmt.Errorf("root bucket: %w", err)
	}
	for _, id := range freeIDs {
		if c.marked(id) {
			return fmt.Errorf("page %d is both free and in use", id)
		}
	}
	return nil
}

func (c *imageChecker) mark(id uint64)        { c.seen[id/64] |= 1 << (id % 64) }
func (c *imageChecker) marked(id uint64) bool { return c.seen[id/64]&(1<<(id%64)) != 0 }

// readMeta reads and validates the meta page id at offset off.
func (c *imageChecker) readMeta(id uint64, off int64) (boltMeta, error) {
	var b [boltPageHeader + boltMetaSize + 8]byte
	if _, err := c.r.ReadAt(b[:], off); err != nil {
		return boltMeta{}, fmt.Errorf("read: %w", err)
	}
	if got := boltOrder.Uint64(b[0:]); got != id {
		return boltMeta{}, fmt.Errorf("identifies as page %d", got)
	}
	if f := boltOrder.Uint16(b[8:]); f != boltMetaPage {
		return boltMeta{}, fmt.Errorf("flags %#x, not a meta page", f)
	}
	m := b[boltPageHeader:]
	if boltOrder.Uint32(m[0:]) != boltMagic {
		return boltMeta{}, errors.New("bad magic: not a bbolt file")
	}
	if v := boltOrder.Uint32(m[4:]); v != boltVersion {
		return boltMeta{}, fmt.Errorf("bbolt format version %d, want %d", v, boltVersion)
	}
	h := fnv.New64a()
	h.Write(m[:boltMetaSize])
	if boltOrder.Uint64(m[boltMetaSize:]) != h.Sum64() {
		return boltMeta{}, errors.New("checksum mismatch")
	}
	meta := boltMeta{
		pageSize: boltOrder.Uint32(m[8:]),
		flags:    boltOrder.Uint32(m[12:]),
		root:     boltOrder.Uint64(m[16:]), // m[24:32] is the root bucket's sequence
		freelist: boltOrder.Uint64(m[32:]),
		hwm:      boltOrder.Uint64(m[40:]),
	}
	if ps := meta.pageSize; ps < 1024 || ps > 64<<10 || ps&(ps-1) != 0 {
		return boltMeta{}, fmt.Errorf("page size %d", ps)
	}
	return meta, nil
}

// readPage reads the page id with its overflow pages, after checking that
// they are in bounds and referenced for the first time, and marks them.
func (c *imageChecker) readPage(id uint64) ([]byte, error) {
	if id < 2 || id >= c.hwm {
		return nil, fmt.Errorf("page id %d out of range [2, %d)", id, c.hwm)
	}
	var hdr [boltPageHeader]byte
	if _, err := c.r.ReadAt(hdr[:], int64(id*c.pageSize)); err != nil {
		return nil, fmt.Errorf("page %d: read: %w", id, err)
	}
	if got := boltOrder.Uint64(hdr[0:]); got != id {
		return nil, fmt.Errorf("page %d identifies as page %d", id, got)
	}
	overflow := uint64(boltOrder.Uint32(hdr[12:]))
	if overflow >= c.hwm-id {
		return nil, fmt.Errorf("page %d: %d overflow pages run past the high-water mark %d", id, overflow, c.hwm)
	}
	span := (overflow + 1) * c.pageSize
	if span > maxPageSpan {
		return nil, fmt.Errorf("page %d spans %d bytes, over the %d-byte limit", id, span, maxPageSpan)
	}
	for p := id; p <= id+overflow; p++ {
		if c.marked(p) {
			return nil, fmt.Errorf("page %d referenced twice", p)
		}
		c.mark(p)
	}
	b := make([]byte, span)
	if _, err := c.r.ReadAt(b, int64(id*c.pageSize)); err != nil {
		return nil, fmt.Errorf("page %d: read: %w", id, err)
	}
	return b, nil
}

func (c *imageChecker) readFreelist(id uint64) ([]uint64, error) {
	b, err := c.readPage(id)
	if err != nil {
		return nil, err
	}
	if f := boltOrder.Uint16(b[8:]); f != boltFreelistPage {
		return nil, fmt.Errorf("flags %#x, not a freelist page", f)
	}
	start, n := uint64(boltPageHeader), uint64(boltOrder.Uint16(b[10:]))
	if n == 0xFFFF { // the real count is the first element
		if len(b) < boltPageHeader+8 {
			return nil, errors.New("truncated count")
		}
		n = boltOrder.Uint64(b[boltPageHeader:])
		start += 8
	}
	if n > (uint64(len(b))-start)/8 {
		return nil, fmt.Errorf("%d ids do not fit the page", n)
	}
	ids := make([]uint64, n)
	dup := make(map[uint64]bool, n)
	for i := range ids {
		id := boltOrder.Uint64(b[start+8*uint64(i):])
		if id < 2 || id >= c.hwm || dup[id] {
			return nil, fmt.Errorf("free page id %d out of range or listed twice", id)
		}
		dup[id] = true
		ids[i] = id
	}
	return ids, nil
}

// checkBucketTree checks the page tree of a bucket rooted at page root.
func (c *imageChecker) checkBucketTree(root uint64, bucketDepth int) error {
	_, err := c.checkPage(root, nil, nil, 0, bucketDepth)
	return err
}

// checkPage checks page id and its subtree: every key k must satisfy
// lo <= k (lo nil: no bound) and k < hi (hi nil: no bound). It returns the
// largest key of the subtree (nil if it holds none).
func (c *imageChecker) checkPage(id uint64, lo, hi []byte, depth, bucketDepth int) ([]byte, error) {
	if depth >= maxTreeDepth {
		return nil, fmt.Errorf("page %d: tree deeper than %d", id, maxTreeDepth)
	}
	b, err := c.readPage(id)
	if err != nil {
		return nil, err
	}
	switch f := boltOrder.Uint16(b[8:]); f {
	case boltBranchPage:
		return c.checkBranch(id, b, lo, hi, depth, bucketDepth)
	case boltLeafPage:
		max, err := c.checkLeaf(b, lo, hi, bucketDepth)
		if err != nil {
			return nil, fmt.Errorf("page %d: %w", id, err)
		}
		return max, nil
	default:
		return nil, fmt.Errorf("page %d: flags %#x, want a branch or leaf page", id, f)
	}
}

// element returns the key (and, for a leaf, the value) of element i of the
// page in b, checking that they lie inside b.
func element(b []byte, i int, leaf bool) (flags uint32, key, value []byte, child uint64, err error) {
	off := uint64(boltPageHeader + boltElemSize*i)
	e := b[off : off+boltElemSize]
	var pos, ksize, vsize uint64
	if leaf {
		flags = boltOrder.Uint32(e[0:])
		pos, ksize, vsize = uint64(boltOrder.Uint32(e[4:])), uint64(boltOrder.Uint32(e[8:])), uint64(boltOrder.Uint32(e[12:]))
	} else {
		pos, ksize = uint64(boltOrder.Uint32(e[0:])), uint64(boltOrder.Uint32(e[4:]))
		child = boltOrder.Uint64(e[8:])
	}
	start := off + pos
	if ksize == 0 {
		return 0, nil, nil, 0, fmt.Errorf("element %d: empty key", i)
	}
	if start+ksize+vsize > uint64(len(b)) {
		return 0, nil, nil, 0, fmt.Errorf("element %d: key and value run past the page", i)
	}
	return flags, b[start : start+ksize], b[start+ksize : start+ksize+vsize], child, nil
}

// elements checks that count elements fit in the page b.
func elements(b []byte) (int, error) {
	n := int(boltOrder.Uint16(b[10:]))
	if boltPageHeader+boltElemSize*n > len(b) {
		return 0, fmt.Errorf("%d elements do not fit in %d bytes", n, len(b))
	}
	return n, nil
}

// inBounds checks the key order: lo <= key < hi, and key > prev.
func inBounds(key, prev, lo, hi []byte) error {
	switch {
	case lo != nil && bytes.Compare(key, lo) < 0:
		return fmt.Errorf("key %x below its parent's key %x", key, lo)
	case hi != nil && bytes.Compare(key, hi) >= 0:
		return fmt.Errorf("key %x not below the next parent key %x", key, hi)
	case prev != nil && bytes.Compare(key, prev) <= 0:
		return fmt.Errorf("key %x not above the previous key %x", key, prev)
	}
	return nil
}

func (c *imageChecker) checkBranch(id uint64, b, lo, hi []byte, depth, bucketDepth int) ([]byte, error) {
	n, err := elements(b)
	if err != nil {
		return nil, fmt.Errorf("branch page %d: %w", id, err)
	}
	if n == 0 {
		return nil, fmt.Errorf("branch page %d is empty", id)
	}
	var prev, max []byte
	for i := range n {
		_, key, _, child, err := element(b, i, false)
		if err != nil {
			return nil, fmt.Errorf("branch page %d: %w", id, err)
		}
		if err := inBounds(key, prev, lo, hi); err != nil {
			return nil, fmt.Errorf("branch page %d element %d: %w", id, i, err)
		}
		next := hi
		if i+1 < n {
			if _, next, _, _, err = element(b, i+1, false); err != nil {
				return nil, fmt.Errorf("branch page %d: %w", id, err)
			}
		}
		sub, err := c.checkPage(child, key, next, depth+1, bucketDepth)
		if err != nil {
			return nil, err
		}
		prev = key
		if sub != nil {
			prev, max = sub, sub
		}
	}
	return max, nil
}

// checkLeaf checks the leaf page in b (a page of the file or an inline
// bucket's page) and the buckets it holds.
func (c *imageChecker) checkLeaf(b, lo, hi []byte, bucketDepth int) ([]byte, error) {
	n, err := elements(b)
	if err != nil {
		return nil, err
	}
	var prev []byte
	for i := range n {
		flags, key, value, _, err := element(b, i, true)
		if err != nil {
			return nil, err
		}
		if err := inBounds(key, prev, lo, hi); err != nil {
			return nil, fmt.Errorf("element %d: %w", i, err)
		}
		prev = key
		switch flags {
		case 0:
		case boltBucketLeafFlag:
			if err := c.checkBucketValue(value, bucketDepth+1); err != nil {
				return nil, fmt.Errorf("bucket %x: %w", key, err)
			}
		default:
			return nil, fmt.Errorf("element %d: flags %#x", i, flags)
		}
	}
	return prev, nil
}

// checkBucketValue checks a bucket header and its tree: a page of its own,
// or an inline leaf page following the header.
func (c *imageChecker) checkBucketValue(v []byte, bucketDepth int) error {
	if bucketDepth > maxBucketDepth {
		return fmt.Errorf("buckets nested deeper than %d", maxBucketDepth)
	}
	if len(v) < boltBucketHeader {
		return fmt.Errorf("bucket value of %d bytes", len(v))
	}
	if root := boltOrder.Uint64(v); root != 0 {
		return c.checkBucketTree(root, bucketDepth)
	}
	inline := v[boltBucketHeader:]
	if len(inline) < boltPageHeader {
		return fmt.Errorf("inline bucket of %d bytes", len(inline))
	}
	if f := boltOrder.Uint16(inline[8:]); f != boltLeafPage {
		return fmt.Errorf("inline bucket page flags %#x, want a leaf page", f)
	}
	if _, err := c.checkLeaf(inline, nil, nil, bucketDepth); err != nil {
		return fmt.Errorf("inline bucket: %w", err)
	}
	return nil
}

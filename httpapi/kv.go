package httpapi

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/httpapi/wire"
)

const kvPrefix = "/v1/kv/"

// kvKey extracts the key from the escaped path, so that "%2F" and "//"
// reach the store as written.
func kvKey(r *http.Request) (string, error) {
	p := r.URL.EscapedPath()
	if !strings.HasPrefix(p, kvPrefix) {
		return "", badRequest("path must start with %s", kvPrefix)
	}
	key, err := url.PathUnescape(strings.TrimPrefix(p, kvPrefix))
	if err != nil {
		return "", badRequest("bad key escaping: %v", err)
	}
	if len(key) > fsm.MaxKeySize {
		return "", badRequest("key is %d bytes, over the %d-byte limit", len(key), fsm.MaxKeySize)
	}
	return key, nil
}

// query wraps URL parameters with Consul's conventions: a flag is on when
// present (with no value or "true"); numbers are strictly parsed.
type query struct{ url.Values }

func (q query) flag(name string) (bool, error) {
	v, ok := q.Values[name]
	if !ok {
		return false, nil
	}
	if len(v) == 0 || v[0] == "" {
		return true, nil
	}
	b, err := strconv.ParseBool(v[0])
	if err != nil {
		return false, badRequest("invalid value %q for ?%s: want true or false", v[0], name)
	}
	return b, nil
}

func (q query) uint(name string) (val uint64, present bool, err error) {
	if !q.Has(name) {
		return 0, false, nil
	}
	s := q.Get(name)
	val, err = strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, true, badRequest("invalid value %q for ?%s: want an unsigned integer", s, name)
	}
	return val, true, nil
}

// Blocking queries (Consul's ?index=N&wait=D): the answer is held until
// the node's applied index passes N or the wait ends, whichever is first.
// The index is the Raft applied index, so any committed change wakes every
// watcher and clients re-query, as Consul allows ("a blocking query may
// return before anything it watches changed").
const (
	defaultWait = 5 * time.Minute
	maxWait     = 10 * time.Minute
)

// wait parses ?wait= (Go or Consul duration syntax: "30s", "5m").
func (q query) wait() (time.Duration, error) {
	if !q.Has("wait") {
		return defaultWait, nil
	}
	d, err := time.ParseDuration(q.Get("wait"))
	if err != nil || d < 0 {
		return 0, badRequest("invalid value %q for ?wait: want a duration such as 30s", q.Get("wait"))
	}
	return min(d, maxWait), nil
}

// block waits until the applied index exceeds index, the wait (plus up to
// 1/16 jitter, as Consul adds) elapses, or the client goes away.
func (a *API) block(r *http.Request, index uint64, wait time.Duration) {
	if a.node.AppliedIndex() > index {
		return
	}
	wait += time.Duration(rand.Int64N(int64(wait/16) + 1))
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	_ = a.node.WatchApplied(ctx, index+1) // timing out is the normal end of a quiet watch
}

func (a *API) kvPut(w http.ResponseWriter, r *http.Request) error {
	key, err := kvKey(r)
	if err != nil {
		return err
	}
	if key == "" {
		return badRequest("missing key: PUT /v1/kv/<key>")
	}
	if !utf8.ValidString(key) {
		// JSON answers (GET, ?keys, ?recurse) could not return it intact.
		return badRequest("key is not valid UTF-8 (percent-escapes must decode to UTF-8 text)")
	}
	if r.ContentLength > fsm.MaxValueSize {
		// Refused before reading: the client need not send the rest.
		return errValueTooLarge
	}
	if err := a.aclCheck(r, key, true); err != nil {
		return err
	}
	q := query{r.URL.Query()}
	for _, unsupported := range []string{"acquire", "release"} {
		if q.Has(unsupported) {
			return badRequest("?%s is not supported: raftkv has no sessions", unsupported)
		}
	}
	cas, hasCAS, err := q.uint("cas")
	if err != nil {
		return err
	}
	flags, _, err := q.uint("flags")
	if err != nil {
		return err
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, fsm.MaxValueSize))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errValueTooLarge
		}
		return badRequest("read body: %v", err)
	}
	cmd := fsm.Command{Op: fsm.OpSet, Key: key, Value: body, Flags: flags}
	if hasCAS {
		cmd.Op, cmd.Index = fsm.OpCAS, cas
	}
	return a.write(w, r, body, cmd)
}

func (a *API) kvDelete(w http.ResponseWriter, r *http.Request) error {
	key, err := kvKey(r)
	if err != nil {
		return err
	}
	q := query{r.URL.Query()}
	recurse, err := q.flag("recurse")
	if err != nil {
		return err
	}
	cas, hasCAS, err := q.uint("cas")
	if err != nil {
		return err
	}
	cmd := fsm.Command{Op: fsm.OpDelete, Key: key}
	switch {
	case recurse && hasCAS:
		return badRequest("?cas cannot be combined with ?recurse")
	case recurse:
		cmd.Op = fsm.OpDeletePrefix
	case key == "":
		return badRequest("missing key: DELETE /v1/kv/<key> (or ?recurse to delete a prefix)")
	case hasCAS:
		cmd.Op, cmd.Index = fsm.OpCAD, cas
	}
	aclCheck := a.aclCheck
	if recurse {
		aclCheck = a.aclCheckPrefix // every key under it must be writable
	}
	if err := aclCheck(r, key, true); err != nil {
		return err
	}
	return a.write(w, r, nil, cmd)
}

// write applies cmd through the leader and answers true/false.
func (a *API) write(w http.ResponseWriter, r *http.Request, body []byte, cmd fsm.Command) error {
	res, forwarded, err := a.apply(w, r, body, cmd)
	if forwarded || err != nil {
		return err
	}
	w.Header().Set(wire.HeaderIndex, strconv.FormatUint(res.Index, 10))
	writeJSON(w, http.StatusOK, res.OK)
	return nil
}

func (a *API) kvGet(w http.ResponseWriter, r *http.Request) error {
	key, err := kvKey(r)
	if err != nil {
		return err
	}
	q := query{r.URL.Query()}
	var raw, recurse, keys, stale bool
	for name, p := range map[string]*bool{"raw": &raw, "recurse": &recurse, "keys": &keys, "stale": &stale} {
		if *p, err = q.flag(name); err != nil {
			return err
		}
	}
	if _, err := q.flag("consistent"); err != nil {
		return err
	}
	if raw && (recurse || keys) {
		return badRequest("?raw cannot be combined with ?recurse or ?keys")
	}
	if key == "" && !recurse && !keys {
		return badRequest("missing key: GET /v1/kv/<key> (or ?recurse / ?keys for a prefix)")
	}
	watchIndex, blocking, err := q.uint("index")
	if err != nil {
		return err
	}
	wait, err := q.wait()
	if err != nil {
		return err
	}
	aclFilter, err := a.aclRead(r, key, recurse || keys)
	if err != nil {
		return err
	}
	if !stale && !unsafeLocalReads {
		if err := a.linearize(r); err != nil {
			return readError{err}
		}
	}
	if blocking && watchIndex > 0 {
		a.block(r, watchIndex, wait)
		// The rules may have been reloaded while the query waited.
		if aclFilter, err = a.aclRead(r, key, recurse || keys); err != nil {
			return err
		}
	}
	store := a.node.Store()
	w.Header().Set(wire.HeaderIndex, strconv.FormatUint(a.node.AppliedIndex(), 10))
	switch {
	case keys:
		var list []string
		if aclFilter == nil {
			list, err = store.KeysLimit(key, q.Get("separator"), maxListBytes)
		} else {
			list, err = aclKeys(store, key, q.Get("separator"), aclFilter)
		}
		if err != nil {
			return listError(key, err)
		}
		if len(list) == 0 {
			w.WriteHeader(http.StatusNotFound)
			return nil
		}
		writeJSON(w, http.StatusOK, list)
	case recurse:
		entries, err := store.ListLimit(key, maxListBytes)
		if err != nil {
			return listError(key, err)
		}
		entries = aclFilterEntries(entries, aclFilter)
		if len(entries) == 0 {
			w.WriteHeader(http.StatusNotFound)
			return nil
		}
		out := make([]wire.KVPair, len(entries))
		for i, e := range entries {
			out[i] = toPair(e)
		}
		writeJSON(w, http.StatusOK, out)
	default:
		e, ok, err := store.Get(key)
		if err != nil {
			return readError{err}
		}
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			return nil
		}
		if raw {
			w.Header().Set("Content-Type", "application/octet-stream")
			_, _ = w.Write(e.Value)
			return nil
		}
		writeJSON(w, http.StatusOK, []wire.KVPair{toPair(e)})
	}
	return nil
}

var errValueTooLarge = &apiError{status: http.StatusRequestEntityTooLarge, outcome: wire.OutcomeFailed,
	msg: "value over the 512 KiB limit"}

// maxListBytes bounds the answer of GET ?recurse and ?keys: the keys and
// values it holds, plus fsm.EntryOverhead per entry. The whole answer is read
// in one transaction and held in memory (twice, counting its JSON), so
// without a bound one request could exhaust a node's memory. A variable so
// tests can lower it.
var maxListBytes int64 = 32 << 20

// listError turns a failed listing into its answer: over maxListBytes is
// the client's to fix (a narrower prefix), anything else a read error.
func listError(prefix string, err error) error {
	if errors.Is(err, fsm.ErrResultTooLarge) {
		return badRequest("the listing under %q is over the %d MiB answer limit: list narrower prefixes "+
			"(?keys&separator=/ walks one level at a time), or use GET /v1/snapshot for a full copy", prefix, maxListBytes>>20)
	}
	return readError{err}
}

func toPair(e fsm.Entry) wire.KVPair {
	return wire.KVPair{Key: e.Key, Value: e.Value, Flags: e.Flags, CreateIndex: e.CreateIndex, ModifyIndex: e.ModifyIndex}
}

// apply applies cmd on the leader, or forwards the request (with body) to
// it; when forwarded, the leader's answer has been relayed and res is empty.
func (a *API) apply(w http.ResponseWriter, r *http.Request, body []byte, cmd fsm.Command) (res fsm.Result, forwarded bool, err error) {
	forwarded, err = a.leaderDo(w, r, body, func(ctx context.Context) error {
		var err error
		res, err = a.node.Apply(ctx, cmd)
		return err
	})
	return res, forwarded, err
}

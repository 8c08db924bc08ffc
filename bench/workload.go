package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

// keyName returns key i of the key space: "k" and the zero-padded index, size bytes long.
// Config.Validate guarantees the index fits.
func keyName(buf []byte, i, size int) []byte {
	buf = append(buf[:0], 'k')
	var d [20]byte
	digits := strconv.AppendInt(d[:0], int64(i), 10)
	for range size - 1 - len(digits) {
		buf = append(buf, '0')
	}
	return append(buf, digits...)
}

// makeValue returns size printable bytes (so a value can be eyeballed with curl).
func makeValue(size int, seed uint64) []byte {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	v := make([]byte, size)
	for i := range v {
		v[i] = alphabet[r.IntN(len(alphabet))]
	}
	return v
}

// worker is one closed-loop client. It is used by one goroutine only.
type worker struct {
	hc        *http.Client
	nodes     []string // base URLs; the worker talks to nodes[cur]
	cur       int
	rotate    bool // move to the next node after a transport error (failover load)
	rec       *recorder
	rng       *rand.Rand
	keys      int
	keySize   int
	value     []byte
	readQuery string
	readRatio float64
	prefilled bool // a 404 on a read is an error, not a miss

	keyBuf []byte
	urlBuf []byte
	body   bytes.Buffer
	casIdx map[int]uint64 // CAS workload: the ModifyIndex this client last saw per key
	token  string         // X-Consul-Token, when the cluster has ACLs on

	// observe, when set, sees every recorded request (failover mode times successes).
	observe func(start, end time.Time, err error)
}

// kvURL returns the URL of key i on the current node with query q ("" or "?...").
func (w *worker) kvURL(i int, q string) string {
	w.keyBuf = keyName(w.keyBuf, i, w.keySize)
	w.urlBuf = append(w.urlBuf[:0], w.nodes[w.cur]...)
	w.urlBuf = append(w.urlBuf, "/v1/kv/"...)
	w.urlBuf = append(w.urlBuf, w.keyBuf...)
	w.urlBuf = append(w.urlBuf, q...)
	return string(w.urlBuf)
}

// do sends one request and reads the whole answer into w.body, so the connection is reused.
func (w *worker) do(ctx context.Context, method, url string, body []byte) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	if w.token != "" {
		req.Header.Set("X-Consul-Token", w.token)
	}
	resp, err := w.hc.Do(req)
	if err != nil {
		w.afterTransportError()
		return nil, err
	}
	w.body.Reset()
	_, err = w.body.ReadFrom(io.LimitReader(resp.Body, 2*MaxValueSize))
	resp.Body.Close()
	if err != nil {
		w.afterTransportError()
		return nil, err
	}
	return resp, nil
}

func (w *worker) afterTransportError() {
	if w.rotate && len(w.nodes) > 1 {
		w.cur = (w.cur + 1) % len(w.nodes)
	}
}

// step issues the next request of workload and records it. It reports whether a request
// ended in error (callers in failover mode back off briefly).
func (w *worker) step(ctx context.Context, workload string) error {
	switch workload {
	case WorkloadGet:
		return w.read(ctx, w.rng.IntN(w.keys))
	case WorkloadMixed:
		if w.rng.Float64() < w.readRatio {
			return w.read(ctx, w.rng.IntN(w.keys))
		}
		return w.write(ctx, w.rng.IntN(w.keys))
	case WorkloadCAS:
		return w.cas(ctx, w.rng.IntN(w.keys))
	default:
		return w.write(ctx, w.rng.IntN(w.keys))
	}
}

// finish records one request unless the run itself ended it (its context was cancelled).
func (w *worker) finish(ctx context.Context, op string, start time.Time, out outcome, err error) error {
	if err != nil && ctx.Err() != nil {
		return nil
	}
	end := time.Now()
	w.rec.record(op, end.Sub(start), out, err)
	if w.observe != nil {
		w.observe(start, end, err)
	}
	return err
}

func (w *worker) write(ctx context.Context, i int) error {
	start := time.Now()
	resp, err := w.do(ctx, http.MethodPut, w.kvURL(i, ""), w.value)
	if err == nil {
		err = checkWrite(resp, w.body.Bytes(), true)
	}
	return w.finish(ctx, OpWrite, start, outcomeOK, err)
}

func (w *worker) read(ctx context.Context, i int) error {
	start := time.Now()
	resp, err := w.do(ctx, http.MethodGet, w.kvURL(i, w.readQuery), nil)
	out := outcomeOK
	if err == nil {
		switch {
		case resp.StatusCode == http.StatusNotFound && !w.prefilled:
			out = outcomeMiss
		case resp.StatusCode == http.StatusNotFound:
			err = errMissing
		case resp.StatusCode != http.StatusOK:
			err = statusError(resp)
		}
	}
	return w.finish(ctx, OpRead, start, out, err)
}

// cas writes key i conditionally on the ModifyIndex this client last saw for it, reading the
// entry first (recorded as a read) when it has none. A false answer (another client won the
// race) is counted, not an error, and makes the next CAS on that key read again.
func (w *worker) cas(ctx context.Context, i int) error {
	idx, ok := w.casIdx[i]
	if !ok {
		var err error
		if idx, err = w.readIndex(ctx, i); err != nil {
			return err
		}
	}
	start := time.Now()
	resp, err := w.do(ctx, http.MethodPut, w.kvURL(i, "?cas="+strconv.FormatUint(idx, 10)), w.value)
	out := outcomeOK
	if err == nil {
		err = checkWrite(resp, w.body.Bytes(), false)
	}
	if err == nil {
		if bytes.Equal(bytes.TrimSpace(w.body.Bytes()), []byte("false")) {
			out = outcomeCASFalse
			delete(w.casIdx, i)
		} else if n, perr := strconv.ParseUint(resp.Header.Get("X-Consul-Index"), 10, 64); perr == nil && n > 0 {
			w.casIdx[i] = n
		} else {
			delete(w.casIdx, i)
		}
	}
	return w.finish(ctx, OpCAS, start, out, err)
}

// readIndex reads key i as JSON and returns its ModifyIndex, 0 when the key does not exist.
func (w *worker) readIndex(ctx context.Context, i int) (uint64, error) {
	start := time.Now()
	resp, err := w.do(ctx, http.MethodGet, w.kvURL(i, ""), nil)
	var idx uint64
	if err == nil {
		switch resp.StatusCode {
		case http.StatusOK:
			var entries []struct{ ModifyIndex uint64 }
			if jerr := json.Unmarshal(w.body.Bytes(), &entries); jerr != nil || len(entries) == 0 {
				err = errBadAnswer
			} else {
				idx = entries[0].ModifyIndex
			}
		case http.StatusNotFound:
		default:
			err = statusError(resp)
		}
	}
	return idx, w.finish(ctx, OpRead, start, outcomeOK, err)
}

// checkWrite checks the answer to a PUT: 200 and "true" (or "false" when allowed).
func checkWrite(resp *http.Response, body []byte, mustBeTrue bool) error {
	if resp.StatusCode != http.StatusOK {
		return statusError(resp)
	}
	switch string(bytes.TrimSpace(body)) {
	case "true":
		return nil
	case "false":
		if !mustBeTrue {
			return nil
		}
	}
	return errBadAnswer
}

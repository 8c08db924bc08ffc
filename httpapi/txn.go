package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/httpapi/wire"
)

// maxTxnBody bounds a /v1/txn body: the encoded transaction may hold at most
// fsm.MaxValueSize bytes, and base64 plus JSON framing adds about a third.
const maxTxnBody = 1 << 20

// txn is PUT /v1/txn: up to 64 KV operations applied all or nothing, in
// Consul's shape. Every transaction, read-only ones included, goes through
// the Raft log, so it is linearizable and a read-only one sees one point in
// time. 200 with Results when it took effect; 409 with Errors (by operation
// index) when an operation failed and nothing took effect; 400/413 for a
// malformed request, which is never proposed.
func (a *API) txn(w http.ResponseWriter, r *http.Request) error {
	tooLarge := &apiError{status: http.StatusRequestEntityTooLarge, outcome: wire.OutcomeFailed,
		msg: "transaction body over the 1 MiB limit"}
	if r.ContentLength > maxTxnBody { // refused before reading a byte of it
		return tooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxTxnBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return tooLarge
		}
		return badRequest("read body: %v", err)
	}
	ops, err := parseTxn(body)
	if err != nil {
		return err
	}
	if err := a.authorizeTxn(r, ops); err != nil {
		return err
	}
	cmd := fsm.Command{Op: fsm.OpTxn, Value: fsm.EncodeTxn(ops)}
	if len(cmd.Value) > fsm.MaxValueSize {
		return &apiError{status: http.StatusRequestEntityTooLarge, outcome: wire.OutcomeFailed,
			msg: "transaction over the 512 KiB limit (keys and values together)"}
	}
	res, forwarded, err := a.apply(w, r, body, cmd)
	if forwarded || err != nil {
		return err
	}
	if res.Txn == nil {
		return errors.New("txn: the state machine returned no transaction result")
	}
	w.Header().Set(wire.HeaderIndex, strconv.FormatUint(res.Index, 10))
	if len(res.Txn.Errors) > 0 {
		out := wire.TxnResponse{}
		for _, e := range res.Txn.Errors {
			out.Errors = append(out.Errors, wire.TxnError{OpIndex: e.OpIndex, What: e.What})
		}
		writeJSON(w, http.StatusConflict, out)
		return nil
	}
	out := wire.TxnResponse{Results: make([]wire.TxnResult, 0, len(res.Txn.Results))}
	for _, e := range res.Txn.Results {
		p := toPair(e)
		out.Results = append(out.Results, wire.TxnResult{KV: &p})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// parseTxn decodes and validates a /v1/txn body; every problem is a 400
// naming the operation.
func parseTxn(body []byte) ([]fsm.TxnOp, error) {
	var in []wire.TxnOp
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&in); err != nil {
		return nil, badRequest("invalid transaction body: want a JSON array of operations: %v", err)
	}
	if dec.More() {
		return nil, badRequest("invalid transaction body: data after the JSON array")
	}
	if len(in) == 0 {
		return nil, badRequest("empty transaction: give 1 to %d operations", fsm.MaxTxnOps)
	}
	if len(in) > fsm.MaxTxnOps {
		return nil, &apiError{status: http.StatusRequestEntityTooLarge, outcome: wire.OutcomeFailed,
			msg: "transaction has " + strconv.Itoa(len(in)) + " operations, the limit is " + strconv.Itoa(fsm.MaxTxnOps)}
	}
	ops := make([]fsm.TxnOp, 0, len(in))
	for i, o := range in {
		if o.Node != nil || o.Service != nil || o.Check != nil || o.Session != nil {
			return nil, badRequest("operation %d: only KV operations are supported", i)
		}
		if o.KV == nil {
			return nil, badRequest("operation %d: missing \"KV\"", i)
		}
		switch o.KV.Verb {
		case "lock", "unlock", "check-session":
			return nil, badRequest("operation %d: verb %q needs sessions, which raftkv does not have", i, o.KV.Verb)
		}
		if o.KV.Session != "" {
			return nil, badRequest("operation %d: sessions are not supported", i)
		}
		verb, ok := fsm.ParseTxnVerb(o.KV.Verb)
		if !ok {
			return nil, badRequest("operation %d: unknown verb %q (want set, cas, get, get-tree, check-index, check-not-exists, delete, delete-tree or delete-cas)", i, o.KV.Verb)
		}
		op := fsm.TxnOp{Verb: verb, Key: o.KV.Key, Value: o.KV.Value, Flags: o.KV.Flags, Index: o.KV.Index}
		if len(op.Value) == 0 {
			op.Value = nil
		}
		if err := op.Validate(); err != nil {
			if errors.Is(err, fsm.ErrValueTooLarge) {
				return nil, &apiError{status: http.StatusRequestEntityTooLarge, outcome: wire.OutcomeFailed,
					msg: "operation " + strconv.Itoa(i) + ": value over the 512 KiB limit"}
			}
			return nil, badRequest("operation %d: %v", i, err)
		}
		ops = append(ops, op)
	}
	return ops, nil
}

// authorizeTxn checks the caller's token against every operation's key
// before anything is proposed.
func (a *API) authorizeTxn(r *http.Request, ops []fsm.TxnOp) error {
	return a.aclCheckTxn(r, ops)
}

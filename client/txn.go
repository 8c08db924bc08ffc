package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/raftkv/raftkv/httpapi/wire"
)

// ErrTxnConflict is returned (wrapped) by Txn when an operation failed and
// the transaction was rolled back; the TxnResponse's Errors say which.
var ErrTxnConflict = errors.New("transaction rolled back")

// Txn applies ops all or nothing (PUT /v1/txn). On success it returns the
// results; when an operation failed (HTTP 409) it returns the per-operation
// errors together with an error wrapping ErrTxnConflict.
func (c *Client) Txn(ctx context.Context, ops []wire.TxnKVOp) (wire.TxnResponse, error) {
	in := make([]wire.TxnOp, len(ops))
	for i := range ops {
		in[i] = wire.TxnOp{KV: &ops[i]}
	}
	body, err := json.Marshal(in)
	if err != nil {
		return wire.TxnResponse{}, fmt.Errorf("encode transaction: %w", err)
	}
	var out wire.TxnResponse
	_, err = c.do(ctx, http.MethodPut, "/v1/txn", nil, body, &out)
	var ae *Error
	if errors.As(err, &ae) && ae.Status == http.StatusConflict {
		if jerr := json.Unmarshal(ae.Body, &out); jerr != nil {
			return out, fmt.Errorf("decode transaction errors: %w", jerr)
		}
		return out, fmt.Errorf("%w: %d operation(s) failed", ErrTxnConflict, len(out.Errors))
	}
	return out, err
}

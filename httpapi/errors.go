package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/httpapi/wire"
)

// apiError is an error with the answer the client gets. Its message is safe
// to show to clients.
type apiError struct {
	status  int
	outcome string
	msg     string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &apiError{status: http.StatusBadRequest, outcome: wire.OutcomeFailed, msg: fmt.Sprintf(format, args...)}
}

var (
	errMethodNotAllowed = &apiError{status: http.StatusMethodNotAllowed, outcome: wire.OutcomeFailed, msg: "method not allowed"}
	errNoRoute          = &apiError{status: http.StatusNotFound, outcome: wire.OutcomeFailed, msg: "no such endpoint"}
	errTooLarge         = &apiError{status: http.StatusRequestEntityTooLarge, outcome: wire.OutcomeFailed, msg: "request body too large"}
)

// readError marks an error of a read: a read changes nothing, so its outcome
// is always failed, whatever went wrong.
type readError struct{ err error }

func (e readError) Error() string { return e.err.Error() }
func (e readError) Unwrap() error { return e.err }

// classify is the one place an error becomes a status, an outcome and a
// message for the client.
func classify(err error) (status int, outcome, msg string) {
	var ae *apiError
	var fe *forwardedError
	var mbe *http.MaxBytesError
	var re readError
	isRead := errors.As(err, &re)
	outcome = wire.OutcomeFailed
	switch {
	case errors.As(err, &ae):
		return ae.status, ae.outcome, ae.msg
	case errors.As(err, &fe):
		return fe.status, fe.body.Outcome, fe.body.Error
	case errors.As(err, &mbe):
		return errTooLarge.status, errTooLarge.outcome, errTooLarge.msg
	case errors.Is(err, cluster.ErrBadRequest):
		return http.StatusBadRequest, outcome, err.Error()
	case errors.Is(err, cluster.ErrLeftCluster):
		return http.StatusConflict, outcome, err.Error()
	case errors.Is(err, cluster.ErrUnknownServer):
		return http.StatusNotFound, outcome, err.Error()
	case errors.Is(err, cluster.ErrDiskFull):
		// Refused before proposing: nothing happened.
		return http.StatusInsufficientStorage, outcome, err.Error()
	case errors.Is(err, cluster.ErrOutcomeUnknown):
		if isRead {
			return http.StatusGatewayTimeout, outcome, err.Error()
		}
		return http.StatusGatewayTimeout, wire.OutcomeUnknown, err.Error()
	case errors.Is(err, cluster.ErrNotLeader), errors.Is(err, cluster.ErrNoLeader),
		errors.Is(err, cluster.ErrNotReady), errors.Is(err, cluster.ErrShuttingDown),
		errors.Is(err, errLeaderUnreachable):
		return http.StatusServiceUnavailable, outcome, err.Error()
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		if isRead {
			return http.StatusGatewayTimeout, outcome, "timed out: " + err.Error()
		}
		return http.StatusGatewayTimeout, wire.OutcomeUnknown, "timed out: " + err.Error()
	default:
		if isRead {
			return http.StatusInternalServerError, outcome, "internal error"
		}
		return http.StatusInternalServerError, wire.OutcomeUnknown, "internal error"
	}
}

func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, outcome, msg := classify(err)
	lvl := a.log.Debug
	if status >= 500 {
		lvl = a.log.Warn
	}
	lvl("request failed", "method", r.Method, "path", r.URL.Path, "status", status, "outcome", outcome, "error", err)
	w.Header().Set(wire.HeaderOutcome, outcome)
	writeJSON(w, status, wire.Error{Error: msg, Outcome: outcome})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (a *API) setClusterHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set(wire.HeaderKnownLeader, strconv.FormatBool(a.node.KnownLeader()))
	lc := a.node.LastContact().Milliseconds()
	if lc < 0 {
		lc = 0
	}
	h.Set(wire.HeaderLastContact, strconv.FormatInt(lc, 10))
	h.Set(wire.HeaderIndex, strconv.FormatUint(a.node.AppliedIndex(), 10))
}

package bench

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"
)

// Error kinds a request can end with. An HTTP error answer is reported as "http <status>",
// followed by the server's outcome ("failed" or "unknown") when it gave one.
const (
	KindTimeout     = "timeout"      // the request outlived Config.Timeout
	KindConnRefused = "conn refused" // nothing listens at the address
	KindConnReset   = "conn reset"   // the connection broke mid-request (a killed node)
	KindTransport   = "transport"    // any other client-side failure
	KindMissing     = "missing key"  // 404 on a read after prefill
	KindBadAnswer   = "bad answer"   // a 200 whose body is not what the API promises
)

// httpError is a non-2xx answer.
type httpError struct {
	Status  int
	Outcome string // the X-Raftkv-Outcome header, "" when absent
}

func (e *httpError) Error() string {
	if e.Outcome == "" {
		return "http " + strconv.Itoa(e.Status)
	}
	return "http " + strconv.Itoa(e.Status) + " " + e.Outcome
}

// errMissing is a 404 on a read of a key that the prefill wrote.
var errMissing = errors.New(KindMissing)

// errBadAnswer is a 200 whose body does not parse.
var errBadAnswer = errors.New(KindBadAnswer)

// errorKind maps an error to the short label the report counts it under.
func errorKind(err error) string {
	var he *httpError
	switch {
	case errors.As(err, &he):
		return he.Error()
	case errors.Is(err, errMissing):
		return KindMissing
	case errors.Is(err, errBadAnswer):
		return KindBadAnswer
	case errors.Is(err, context.DeadlineExceeded), isTimeout(err):
		return KindTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return KindConnRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.EPIPE):
		return KindConnReset
	default:
		return KindTransport
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// statusError builds the error for a non-2xx answer.
func statusError(resp *http.Response) error {
	return &httpError{Status: resp.StatusCode, Outcome: resp.Header.Get("X-Raftkv-Outcome")}
}

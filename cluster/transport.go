package cluster

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// Dialing a peer that is down: why raftkv retries inside Dial.
//
// hashicorp/raft backs replication to a peer off exponentially on every
// failed AppendEntries (10ms doubling up to ~10s), and only a successful
// AppendEntries from the replication goroutine itself resets it; a good
// heartbeat does not. A follower that comes back after a few seconds of
// being down therefore sits idle for up to 10s before its catch-up starts.
//
// retryStreamLayer keeps failures from piling up: a dial to an unreachable
// peer keeps retrying (every dialRetryEvery, each attempt bounded by
// dialAttemptTimeout) for up to dialWindow before it reports an error. The
// replication goroutine waits inside Dial instead of counting failures, and
// the moment the peer listens again the dial succeeds and replication
// resumes. Close aborts every waiting dial, so raft's shutdown is not held
// up (the node's shutdown aborts them before raft shuts down). Failure detection does not depend on these dials: the failure
// detector asks every server for its own stats.
const (
	dialRetryEvery     = 25 * time.Millisecond
	dialAttemptTimeout = time.Second
	dialWindow         = 60 * time.Second
)

type retryStreamLayer struct {
	ln        *net.TCPListener
	advertise net.Addr
	closed    chan struct{}
	abort     <-chan struct{} // the node's shutdown: closed before raft shuts down
	override  map[string]string
}

var _ raft.StreamLayer = (*retryStreamLayer)(nil)

func newRetryStreamLayer(bind string, advertise net.Addr, abort <-chan struct{}, override map[string]string) (*retryStreamLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", bind, err)
	}
	l := &retryStreamLayer{ln: ln.(*net.TCPListener), advertise: advertise, closed: make(chan struct{}), abort: abort, override: override}
	if l.advertise == nil {
		l.advertise = ln.Addr()
	}
	if a, ok := l.advertise.(*net.TCPAddr); ok && a.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("advertise address %s is unspecified", a)
	}
	return l, nil
}

func (l *retryStreamLayer) Accept() (net.Conn, error) { return l.ln.Accept() }
func (l *retryStreamLayer) Addr() net.Addr            { return l.advertise }

func (l *retryStreamLayer) Close() error {
	select {
	case <-l.closed:
	default:
		close(l.closed)
	}
	return l.ln.Close()
}

// Dial connects to address, retrying while the peer is unreachable, for up
// to dialWindow or until the layer is closed.
func (l *retryStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	target := string(address)
	if o, ok := l.override[target]; ok {
		target = o
	}
	deadline := time.Now().Add(dialWindow)
	attempt := min(timeout, dialAttemptTimeout)
	var lastErr error
	for {
		conn, err := net.DialTimeout("tcp", target, attempt)
		if err == nil {
			return conn, nil
		}
		lastErr = err
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("dial %s for %s: %w", address, dialWindow, lastErr)
		}
		t := time.NewTimer(dialRetryEvery)
		select {
		case <-l.closed:
			t.Stop()
			return nil, errors.Join(errors.New("transport closed"), lastErr)
		case <-l.abort:
			t.Stop()
			return nil, errors.Join(errors.New("node shutting down"), lastErr)
		case <-t.C:
		}
	}
}

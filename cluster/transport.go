package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
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

// handshakeTimeout bounds the TLS handshake of an accepted Raft
// connection, so a peer that connects and stalls does not hold a
// goroutine forever.
const handshakeTimeout = 10 * time.Second

// TransportTLS runs the Raft transport over mutually authenticated TLS.
// Both sides verify the other: a dialing node checks the peer's certificate
// against the peer's advertised Raft host (never a --dial-override target),
// and an accepting node refuses any connection whose peer did not present a
// certificate that Server verified, whatever Server.ClientAuth says.
type TransportTLS struct {
	// Server is the configuration for accepted connections. It should
	// require and verify client certificates (tlsutil's PeerServerConfig).
	Server *tls.Config
	// Client returns the configuration for one connection to a peer whose
	// advertised Raft host is serverName. It is called per dial, so
	// reloaded certificates apply to new connections.
	Client func(serverName string) *tls.Config
}

func (t *TransportTLS) validate() error {
	if t != nil && (t.Server == nil || t.Client == nil) {
		return errors.New("raft TLS needs both a server and a client configuration")
	}
	return nil
}

type retryStreamLayer struct {
	ln        *net.TCPListener
	advertise net.Addr
	closed    chan struct{}
	abort     <-chan struct{} // the node's shutdown: closed before raft shuts down
	override  map[string]string
	tls       *TransportTLS // nil = plain TCP
	log       *slog.Logger
}

var _ raft.StreamLayer = (*retryStreamLayer)(nil)

func newRetryStreamLayer(bind string, advertise net.Addr, abort <-chan struct{}, override map[string]string, tlsc *TransportTLS, log *slog.Logger) (*retryStreamLayer, error) {
	if err := tlsc.validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", bind, err)
	}
	l := &retryStreamLayer{ln: ln.(*net.TCPListener), advertise: advertise, closed: make(chan struct{}), abort: abort, override: override, tls: tlsc, log: log}
	if l.advertise == nil {
		l.advertise = ln.Addr()
	}
	if a, ok := l.advertise.(*net.TCPAddr); ok && a.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("advertise address %s is unspecified", a)
	}
	return l, nil
}

// Accept returns the next connection. With TLS the handshake is not done
// here (raft accepts connections one at a time, so a slow peer would hold
// up the others) but on the connection's first read or write, in raft's
// goroutine for that connection.
func (l *retryStreamLayer) Accept() (net.Conn, error) {
	c, err := l.ln.Accept()
	if err != nil || l.tls == nil {
		return c, err
	}
	return &serverTLSConn{Conn: tls.Server(c, l.tls.Server), log: l.log}, nil
}

func (l *retryStreamLayer) Addr() net.Addr { return l.advertise }

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
		if err == nil && l.tls != nil {
			// A peer that goes away mid-handshake is retried like an
			// unreachable one; a certificate problem is reported at once.
			if conn, err = l.handshake(conn, address, timeout); err != nil && !retryableHandshakeErr(err) {
				return nil, err
			}
		}
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

// handshake runs the client side of the TLS handshake on conn to the peer
// advertised as address, within timeout or until the layer closes.
func (l *retryStreamLayer) handshake(conn net.Conn, address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	host, _, err := net.SplitHostPort(string(address))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("raft tls: peer address %q: %w", address, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go func() { // ends with the handshake (cancel above)
		select {
		case <-l.closed:
		case <-l.abort:
		case <-ctx.Done():
		}
		cancel()
	}()
	tc := tls.Client(conn, l.tls.Client(host))
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("raft tls handshake with %s: %w", address, err)
	}
	return tc, nil
}

// retryableHandshakeErr tells a peer that went away mid-handshake (retry,
// like an unreachable one) from one that refused us or that we refused
// (certificates: report at once).
func retryableHandshakeErr(err error) bool {
	var cve *tls.CertificateVerificationError
	var rhe tls.RecordHeaderError
	switch {
	case errors.As(err, &cve), errors.As(err, &rhe):
		return false
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false // the peer listens but does not finish a handshake
	}
	var oe *net.OpError
	// A TLS alert from the peer arrives as an OpError "remote error".
	return errors.As(err, &oe) && oe.Op != "remote error"
}

// serverTLSConn is an accepted Raft connection whose handshake runs on
// first use and must end with a verified client certificate.
type serverTLSConn struct {
	*tls.Conn
	log  *slog.Logger
	once sync.Once
	err  error
}

func (c *serverTLSConn) handshake() error {
	c.once.Do(func() {
		_ = c.Conn.SetDeadline(time.Now().Add(handshakeTimeout))
		err := c.Conn.Handshake()
		if err == nil && len(c.Conn.ConnectionState().VerifiedChains) == 0 {
			err = errors.New("peer presented no verified client certificate")
		}
		if err != nil {
			c.log.Warn("raft: refused a connection: TLS handshake failed", "remote", c.RemoteAddr().String(), "error", err)
			_ = c.Conn.Close()
			// io.EOF: raft's connection handler ends quietly instead of
			// logging a decode error for what is a refused peer.
			c.err = io.EOF
			return
		}
		_ = c.Conn.SetDeadline(time.Time{})
	})
	return c.err
}

func (c *serverTLSConn) Read(p []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *serverTLSConn) Write(p []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

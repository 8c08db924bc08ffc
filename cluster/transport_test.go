package cluster

import (
	"crypto/tls"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/tlsutil"
)

func TestRetryStreamLayerOverrideAndRetry(t *testing.T) {
	// A peer that is not listening yet: the dial waits for it instead of failing.
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := probe.Addr().String()
	probe.Close()

	abort := make(chan struct{})
	l, err := newRetryStreamLayer("127.0.0.1:0", nil, abort, map[string]string{"peer.invalid:1": target}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	type res struct {
		c   net.Conn
		err error
	}
	done := make(chan res, 1)
	go func() {
		c, err := l.Dial(raft.ServerAddress("peer.invalid:1"), time.Second)
		done <- res{c, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("dial returned before the peer listened: %v", r.err)
	case <-time.After(3 * dialRetryEvery):
	}
	ln, err := net.Listen("tcp", target) // the peer comes back
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", target, err)
	}
	defer ln.Close()
	r := <-done
	if r.err != nil {
		t.Fatalf("dial through override after the peer came back: %v", r.err)
	}
	r.c.Close()

	// Shutdown aborts a waiting dial at once.
	ln.Close()
	go func() {
		c, err := l.Dial(raft.ServerAddress("peer.invalid:1"), time.Second)
		done <- res{c, err}
	}()
	close(abort)
	select {
	case r := <-done:
		if r.err == nil {
			t.Fatal("dial succeeded after abort with no listener")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("abort did not end a waiting dial")
	}
}

// tlsLayer starts a TLS stream layer with the certificate NAME in dir
// (made by tlsutil), closed at the end of the test.
func tlsLayer(t *testing.T, dir, name string, override map[string]string) (*retryStreamLayer, *tlsutil.Holder) {
	t.Helper()
	cert, key := tlsutil.CertPaths(dir, name)
	ca, _ := tlsutil.CAPaths(dir)
	h, err := tlsutil.Load(tlsutil.Files{Cert: cert, Key: key, CA: ca})
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	l, err := newRetryStreamLayer("127.0.0.1:0", nil, make(chan struct{}), override,
		&TransportTLS{Server: h.PeerServerConfig(), Client: h.ClientConfig}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, h
}

func certDir(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	if _, _, err := tlsutil.WriteCA(dir, time.Hour, false); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		req := tlsutil.CertRequest{Name: n, Hosts: []string{"localhost"}, ValidFor: time.Hour, Client: n == "client"}
		if _, _, err := tlsutil.WriteCert(dir, req, false); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func newTestTransport(l *retryStreamLayer) *raft.NetworkTransport {
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: l, MaxPool: 1, Timeout: 5 * time.Second})
}

func TestRetryStreamLayerTLS(t *testing.T) {
	dir := certDir(t, "n1", "n2", "client")
	a, _ := tlsLayer(t, dir, "n1", nil)
	transA := newTestTransport(a)
	defer transA.Close()
	target := a.ln.Addr().String()
	// Peers are advertised as localhost:1 and otherhost.invalid:1 and the
	// override sends both to a: the certificate (SAN localhost only) must
	// be checked against the advertised host, not the override target.
	override := map[string]string{"localhost:1": target, "otherhost.invalid:1": target}

	served := make(chan struct{}, 1)
	go func() { // ends when transA closes its consumer side (test end)
		for rpc := range transA.Consumer() {
			rpc.Respond(&raft.AppendEntriesResponse{Term: 7, Success: true}, nil)
			served <- struct{}{}
		}
	}()
	appendVia := func(l *retryStreamLayer, addr string) (*raft.AppendEntriesResponse, error) {
		tr := newTestTransport(l)
		defer tr.Close()
		var resp raft.AppendEntriesResponse
		err := tr.AppendEntries("n1", raft.ServerAddress(addr), &raft.AppendEntriesRequest{Term: 7}, &resp)
		return &resp, err
	}

	t.Run("NodeCertificate", func(t *testing.T) {
		b, _ := tlsLayer(t, dir, "n2", override)
		resp, err := appendVia(b, "localhost:1")
		if err != nil {
			t.Fatalf("AppendEntries over mutual TLS: %v", err)
		}
		if resp.Term != 7 || !resp.Success {
			t.Errorf("response %+v, want term 7, success", resp)
		}
		<-served
	})

	t.Run("ServerNameIsTheAdvertisedHost", func(t *testing.T) {
		b, _ := tlsLayer(t, dir, "n2", override)
		start := time.Now()
		c, err := b.Dial("otherhost.invalid:1", 5*time.Second)
		if err == nil {
			c.Close()
			t.Fatal("dial accepted a certificate without the advertised host otherhost.invalid")
		}
		var cve *tls.CertificateVerificationError
		if !errors.As(err, &cve) {
			t.Errorf("dial error %v, want a certificate verification error", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("certificate failure took %s: it was retried like an unreachable peer", d)
		}
	})

	refused := func(t *testing.T, l *retryStreamLayer) {
		t.Helper()
		if _, err := appendVia(l, "localhost:1"); err == nil {
			t.Fatal("AppendEntries succeeded")
		}
		select {
		case <-served:
			t.Fatal("the RPC reached raft")
		default:
		}
	}
	t.Run("OtherCA", func(t *testing.T) {
		rogue := certDir(t, "n9")
		cert, key := tlsutil.CertPaths(rogue, "n9")
		// The rogue trusts the real CA, so only the server's check of the
		// rogue's certificate can stop it.
		cli, err := tlsutil.ClientFiles(filepath.Join(dir, tlsutil.CACertFile), cert, key)
		if err != nil {
			t.Fatal(err)
		}
		l, err := newRetryStreamLayer("127.0.0.1:0", nil, make(chan struct{}), override, &TransportTLS{
			Server: cli, // unused
			Client: func(name string) *tls.Config { c := cli.Clone(); c.ServerName = name; return c },
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		refused(t, l)
	})
	t.Run("ClientOnlyCertificate", func(t *testing.T) {
		c, _ := tlsLayer(t, dir, "client", override)
		refused(t, c)
	})
	t.Run("PlainTCP", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", target, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// A raft AppendEntries type byte and some payload, unencrypted.
		if _, err := conn.Write([]byte{0, 0x81, 0xa4, 'T', 'e', 'r', 'm', 7}); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = conn.Read(make([]byte, 64))
		var ne net.Error
		if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
			t.Fatalf("plain connection: read %v, want the server to close it", err)
		}
		select {
		case <-served:
			t.Fatal("a plain-TCP RPC reached raft")
		default:
		}
	})
}

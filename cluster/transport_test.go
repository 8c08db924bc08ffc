package cluster

import (
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
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
	l, err := newRetryStreamLayer("127.0.0.1:0", nil, abort, map[string]string{"peer.invalid:1": target})
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

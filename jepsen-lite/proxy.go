package jepsenlite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"time"
)

// Portable partitions, for when network namespaces are not available (not
// root, not Linux) or not wanted (--net proxy): every directed node-to-node
// link goes through a TCP forwarder the harness controls. Node i runs with
// `--dial-override <j raft>=<proxy i->j raft>,<j http>=<proxy i->j http>,...`,
// so everything it dials to reach peer j (raft RPCs, forwarded writes, read
// index requests, health stats, joins) goes through its own pair of proxies
// to j, while peers' addresses stay the ones they advertise. The harness's
// clients dial nodes directly and are never cut.
//
// Cutting a link closes every connection open on it and blackholes new
// ones: they are accepted (the dial succeeds, as a TCP connect into a
// dropped route would not, but nothing gets through) and whatever is sent is
// read and discarded, nothing is forwarded and nothing comes back, so
// requests time out the way they do across a real partition. Slow failures
// also keep hashicorp/raft's per-peer failure backoff small, so the cluster
// recovers promptly after the heal. Healing closes the blackholed
// connections (their owners re-dial) and forwards new ones again.

// Proxy forwards TCP connections from its listener on 127.0.0.1 to Target
// until it is cut.
type Proxy struct {
	// Target is the address connections are forwarded to.
	Target string

	ln net.Listener
	wg sync.WaitGroup

	mu     sync.Mutex
	cut    bool
	closed bool
	open   map[net.Conn]struct{} // forwarded connections, both ends
	held   map[net.Conn]struct{} // blackholed connections (while cut)
}

// NewProxy listens on 127.0.0.1:0 and forwards to target.
func NewProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("proxy to %s: %w", target, err)
	}
	p := &Proxy{Target: target, ln: ln, open: map[net.Conn]struct{}{}, held: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's listening address (what a node dials instead of
// Target).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut closes every connection open on the link and blackholes new ones.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	closeAll(p.open)
}

// Heal closes the blackholed connections and forwards new ones again.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
	closeAll(p.held)
}

// IsCut reports whether the link is cut.
func (p *Proxy) IsCut() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut
}

// Close stops the listener and closes every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.ln.Close()
	closeAll(p.open)
	closeAll(p.held)
	p.mu.Unlock()
	p.wg.Wait()
}

func closeAll(m map[net.Conn]struct{}) {
	for c := range m {
		c.Close()
		delete(m, c)
	}
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.serve(c) }()
	}
}

// track registers c in set unless the proxy is closed, or (for the
// forwarded set) cut; it reports whether it did.
func (p *Proxy) track(c net.Conn, forward bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || (forward && p.cut) {
		return false
	}
	if forward {
		p.open[c] = struct{}{}
	} else {
		p.held[c] = struct{}{}
	}
	return true
}

func (p *Proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.open, c)
		delete(p.held, c)
	}
}

func (p *Proxy) serve(c net.Conn) {
	defer c.Close()
	if !p.IsCut() && p.track(c, true) {
		up, err := net.DialTimeout("tcp", p.Target, 2*time.Second)
		if err != nil {
			p.untrack(c)
			return // the target is down: the dialer sees the connection close
		}
		if p.track(up, true) {
			p.pipe(c, up)
			return
		}
		up.Close()
		p.untrack(c)
		// Cut (or closed) while dialing: fall through to the blackhole.
	}
	if !p.track(c, false) {
		return
	}
	defer p.untrack(c)
	io.Copy(io.Discard, c) // until the sender gives up, or Heal/Close
}

// pipe copies both ways until both directions end or either fails, then
// closes both connections. An orderly end of one direction is passed on as
// a half-close.
func (p *Proxy) pipe(c, up net.Conn) {
	defer p.untrack(c, up)
	defer up.Close()
	var wg sync.WaitGroup
	one := func(dst, src net.Conn) {
		defer wg.Done()
		if _, err := io.Copy(dst, src); err != nil {
			c.Close()
			up.Close()
			return
		}
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}
	wg.Add(2)
	go one(up, c)
	go one(c, up)
	wg.Wait()
}

// Link kinds: each directed link has a proxy to the peer's raft address and
// one to its HTTP address.
const (
	LinkRaft = "raft"
	LinkHTTP = "http"
)

// ProxyNet is the set of proxies of a cluster: one per directed link and
// kind. It cuts and heals links the way Network's iptables rules do.
type ProxyNet struct {
	nodes int
	// links[from][to][kind]; nil on the diagonal.
	links [][]map[string]*Proxy
}

// NewProxyNet starts a proxy for every ordered pair of nodes and kind.
func NewProxyNet(nodes []*Node) (*ProxyNet, error) {
	pn := &ProxyNet{nodes: len(nodes), links: make([][]map[string]*Proxy, len(nodes))}
	for i := range nodes {
		pn.links[i] = make([]map[string]*Proxy, len(nodes))
		for j, to := range nodes {
			if i == j {
				continue
			}
			pn.links[i][j] = map[string]*Proxy{}
			for kind, target := range map[string]string{LinkRaft: to.RaftAddr(), LinkHTTP: to.HTTPAddr()} {
				p, err := NewProxy(target)
				if err != nil {
					pn.Close()
					return nil, err
				}
				pn.links[i][j][kind] = p
			}
		}
	}
	return pn, nil
}

// Link returns the proxy node from uses to reach node to's kind (LinkRaft
// or LinkHTTP) address.
func (pn *ProxyNet) Link(from, to int, kind string) *Proxy { return pn.links[from][to][kind] }

// DialOverride is node i's --dial-override value: each peer's raft and HTTP
// address mapped to i's proxy for it.
func (pn *ProxyNet) DialOverride(i int) string {
	var kv []string
	for j := range pn.links[i] {
		for _, p := range pn.links[i][j] {
			kv = append(kv, p.Target+"="+p.Addr())
		}
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

// Partition applies a grudge (grudge[i] lists the nodes node i must not
// exchange traffic with): both directed links between i and each j in
// grudge[i] are cut, every other link is healed.
func (pn *ProxyNet) Partition(_ context.Context, grudge map[int][]int) error {
	cut := map[[2]int]bool{}
	for i, js := range grudge {
		for _, j := range js {
			if i < 0 || j < 0 || i >= pn.nodes || j >= pn.nodes || i == j {
				return fmt.Errorf("partition: bad link %d-%d", i, j)
			}
			cut[[2]int{i, j}], cut[[2]int{j, i}] = true, true
		}
	}
	for i := range pn.links {
		for j := range pn.links[i] {
			for _, p := range pn.links[i][j] {
				if cut[[2]int{i, j}] {
					p.Cut()
				} else {
					p.Heal()
				}
			}
		}
	}
	return nil
}

// ErrProxyLoss: packet loss needs iptables; a TCP proxy cannot drop packets.
var ErrProxyLoss = errors.New("loss skipped: packet loss needs network namespaces (root); the proxy mode cannot drop packets")

// Lossy is not possible through TCP proxies.
func (pn *ProxyNet) Lossy(context.Context, float64) error { return ErrProxyLoss }

// Heal reconnects every link.
func (pn *ProxyNet) Heal(ctx context.Context) error { return pn.Partition(ctx, nil) }

// Close stops every proxy.
func (pn *ProxyNet) Close() {
	for i := range pn.links {
		for j := range pn.links[i] {
			for _, p := range pn.links[i][j] {
				p.Close()
			}
		}
	}
}

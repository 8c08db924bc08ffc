package main

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/httpapi"
	"github.com/raftkv/raftkv/httpapi/wire"
)

// peers is how this server talks to other servers over HTTP: one
// kept-alive transport, dialing through --dial-override when given, and
// over HTTPS with this node's certificate when tlsFor is not nil.
type peers struct {
	transport *http.Transport
	scheme    string // "http" or "https"
	// token returns the management token this server sends on its own
	// calls to peers when ACLs are on (server_acl.go); nil = none.
	token func() string
}

func newPeers(override map[string]string, tlsFor func(serverName string) *tls.Config) *peers {
	var dial func(ctx context.Context, network, addr string) (net.Conn, error)
	if len(override) > 0 {
		var d net.Dialer
		dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if o, ok := override[addr]; ok {
				addr = o
			}
			return d.DialContext(ctx, network, addr)
		}
	}
	if tlsFor != nil {
		return &peers{transport: httpapi.NewPeerTransportTLS(dial, tlsFor), scheme: "https"}
	}
	return &peers{transport: httpapi.NewPeerTransport(dial), scheme: "http"}
}

// client talks to the node at addr: host:port (peers register their HTTP
// address so) in this cluster's scheme, or a URL.
func (p *peers) client(addr string, timeout time.Duration) *client.Client {
	if !strings.Contains(addr, "://") {
		addr = p.scheme + "://" + addr
	}
	c := client.New(addr, timeout).WithTransport(p.transport)
	if p.token != nil {
		c = c.WithToken(p.token())
	}
	return c
}

// statsFetcher is the failure detector's view of another server: its own
// /v1/status/node, over HTTP (Consul asks each server for its RaftStats the
// same way), including its disk-space state.
func (p *peers) statsFetcher() cluster.StatsFetcher {
	return func(ctx context.Context, httpAddr string) (cluster.PeerStats, error) {
		s, err := p.client(httpAddr, 2*time.Second).Status(ctx)
		if err != nil {
			return cluster.PeerStats{}, err
		}
		return cluster.PeerStats{LastContact: time.Duration(s.LastContactMs) * time.Millisecond, LastTerm: s.LastLogTerm, LastIndex: s.LastIndex,
			DiskFree: s.DiskFreeBytes, DiskReserve: s.DiskReserveBytes, DiskLow: s.DiskLow}, nil
	}
}

// rejoinWatchdog notices that this node was removed from the cluster while
// it was away (dead-node cleanup, or removed while partitioned) and asks to
// be re-added: when it has heard from no leader for a while, it asks the
// other nodes it knows whether it is still a member, and if none lists it,
// sends an automatic join (refused for a node that left gracefully).
func (p *peers) rejoinWatchdog(ctx context.Context, log *slog.Logger, node *cluster.Node, seeds []string, req wire.JoinRequest, quiet time.Duration) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		st := node.Status()
		if st.State == "Leader" || (st.LeaderID != "" && st.LastContact >= 0 && st.LastContact < quiet) {
			continue
		}
		addrs := slices.Clone(seeds)
		if servers, _, err := node.Configuration(); err == nil {
			for _, s := range servers {
				if s.HTTPAddr != "" && s.ID != st.ID {
					addrs = append(addrs, s.HTTPAddr)
				}
			}
		}
		member, asked := false, false
		for _, a := range addrs {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			rc, err := p.client(a, 2*time.Second).Configuration(cctx)
			cancel()
			if err != nil || len(rc.Servers) == 0 {
				continue
			}
			asked = true
			for _, s := range rc.Servers {
				if s.ID == st.ID {
					member = true
				}
			}
			if member {
				break
			}
		}
		if !asked || member {
			continue
		}
		log.Warn("this node is no longer a member; asking to be re-added", "node", st.ID)
		req.Fresh = node.Fresh()
		req.Auto = true
		for _, a := range addrs {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := p.client(a, 10*time.Second).Join(cctx, req)
			cancel()
			if err == nil {
				log.Info("re-added to the cluster", "via", a)
				break
			}
			log.Warn("re-join attempt failed", "via", a, "error", err)
		}
	}
}

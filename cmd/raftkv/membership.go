package main

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/httpapi/wire"
)

// statsFetcher is the failure detector's view of another server: its own
// /v1/status/node, over HTTP (Consul asks each server for its RaftStats the
// same way).
func statsFetcher() cluster.StatsFetcher {
	return func(ctx context.Context, httpAddr string) (cluster.PeerStats, error) {
		// Clients share http.DefaultTransport, so connections are kept alive.
		s, err := client.New(httpAddr, 2*time.Second).Status(ctx)
		if err != nil {
			return cluster.PeerStats{}, err
		}
		return cluster.PeerStats{
			LastContact: time.Duration(s.LastContactMs) * time.Millisecond,
			LastTerm:    s.LastLogTerm,
			LastIndex:   s.LastIndex,
		}, nil
	}
}

// rejoinWatchdog notices that this node was removed from the cluster while
// it was away (dead-node cleanup, or removed while partitioned) and asks to
// be re-added: when it has heard from no leader for a while, it asks the
// other nodes it knows whether it is still a member, and if none lists it,
// sends an automatic join (refused for a node that left gracefully).
func rejoinWatchdog(ctx context.Context, log *slog.Logger, node *cluster.Node, seeds []string, req wire.JoinRequest, quiet time.Duration) {
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
			rc, err := client.New(a, 2*time.Second).Configuration(cctx)
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
			err := client.New(a, 10*time.Second).Join(cctx, req)
			cancel()
			if err == nil {
				log.Info("re-added to the cluster", "via", a)
				break
			}
			log.Warn("re-join attempt failed", "via", a, "error", err)
		}
	}
}

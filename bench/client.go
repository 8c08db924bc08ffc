package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// newHTTPClient returns the client every measurement uses: one transport, kept-alive
// connections, one idle connection kept per client so a closed loop never redials.
// maxConns caps connections per host (0 = unlimited, which means one per client).
func newHTTPClient(clients, maxConns int, timeout time.Duration, tlsCfg *tls.Config) *http.Client {
	tr := &http.Transport{
		Proxy: nil, // loopback benchmarks must never go through an environment proxy
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:        0, // no global cap; the per-host cap below governs
		MaxIdleConnsPerHost: max(clients, maxConns, 2),
		MaxConnsPerHost:     maxConns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
		TLSClientConfig:     tlsCfg,
	}
	return &http.Client{Transport: tr, Timeout: timeout}
}

// baseURL turns "host:port" or "http://host:port/" into "http://host:port".
func baseURL(addr string) string { return baseURLScheme(addr, "http") }

// baseURLScheme is baseURL with scheme for an address that has none.
func baseURLScheme(addr, scheme string) string {
	addr = strings.TrimRight(strings.TrimSpace(addr), "/")
	if strings.HasPrefix(addr, "http://") || strings.HasPrefix(addr, "https://") {
		return addr
	}
	return scheme + "://" + addr
}

// NodeStatus is the answer of GET /v1/status/node. Fields the tool does not use are left out.
type NodeStatus struct {
	ID             string
	State          string
	Term           uint64
	Leader         string
	LeaderID       string
	LeaderAddr     string
	LeaderHTTPAddr string
	LastIndex      uint64
	CommitIndex    uint64
	AppliedIndex   uint64
	LastContactMs  float64
	Voter          bool
	Member         bool
}

// IsLeader reports whether the node says it leads.
func (s NodeStatus) IsLeader() bool {
	return strings.EqualFold(s.State, "leader") || (s.ID != "" && s.ID == s.LeaderID)
}

// getJSON GETs base+path and decodes a 200 answer into v.
func getJSON(ctx context.Context, hc *http.Client, base, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s%s: status %d: %s", base, path, resp.StatusCode, bytes.TrimSpace(body))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

// nodeStatus asks one node for its view.
func nodeStatus(ctx context.Context, hc *http.Client, addr string) (NodeStatus, error) {
	var s NodeStatus
	err := getJSON(ctx, hc, baseURL(addr), "/v1/status/node", &s)
	return s, err
}

// peers asks one node for the voters' Raft addresses.
func peers(ctx context.Context, hc *http.Client, addr string) ([]string, error) {
	var p []string
	err := getJSON(ctx, hc, baseURL(addr), "/v1/status/peers", &p)
	return p, err
}

// resolveTargets asks every node for its status and picks the nodes the clients will load.
// The leader is found by identity (the node whose ID the others name as LeaderID), not by
// comparing addresses, so "localhost:8501" and "127.0.0.1:8501" need not match LeaderHTTPAddr.
// When the leader answering is not in the list, its LeaderHTTPAddr is used for TargetLeader.
func resolveTargets(ctx context.Context, hc *http.Client, nodes []string, target string) (targets []string, leader string, err error) {
	statuses := make([]NodeStatus, len(nodes))
	var leaderID, leaderHTTP string
	var errs []string
	for i, n := range nodes {
		s, err := nodeStatus(ctx, hc, n)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		statuses[i] = s
		if s.LeaderID != "" && leaderID == "" {
			leaderID, leaderHTTP = s.LeaderID, s.LeaderHTTPAddr
		}
	}
	if target == TargetAll {
		if len(errs) == len(nodes) {
			return nil, "", fmt.Errorf("no node answered: %s", strings.Join(errs, "; "))
		}
		for i, n := range nodes {
			if statuses[i].ID == leaderID && leaderID != "" {
				leader = n
			}
		}
		return nodes, leader, nil
	}
	if leaderID == "" {
		if len(errs) > 0 {
			return nil, "", fmt.Errorf("no leader known: %s", strings.Join(errs, "; "))
		}
		return nil, "", fmt.Errorf("no leader known by any of %d nodes", len(nodes))
	}
	for i, n := range nodes {
		if statuses[i].ID == leaderID {
			leader = n
		} else if statuses[i].ID != "" {
			targets = append(targets, n)
		}
	}
	if leader == "" {
		leader = leaderHTTP
	}
	if target == TargetLeader {
		if leader == "" {
			return nil, "", fmt.Errorf("leader %s has no HTTP address", leaderID)
		}
		return []string{leader}, leader, nil
	}
	if len(targets) == 0 {
		return nil, "", fmt.Errorf("no follower among %d nodes answered", len(nodes))
	}
	return targets, leader, nil
}

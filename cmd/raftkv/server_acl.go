package main

import (
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"

	"github.com/raftkv/raftkv/httpapi"
)

// setupACL loads --acl-file and returns the ACL the API enforces (nil
// without the flag: the cluster is open, as without ACLs). It registers the
// SIGHUP reloader (a bad file on reload keeps the rules in force), gives
// this server's own calls to its peers (joins, rejoins, stats) the
// management token, and warns once about listeners that other machines can
// reach without TLS or ACLs. A bad file at start is a usage error (exit 2).
//
// The file is read by each node for itself, not replicated: every node of a
// cluster should carry the same file, since a follower checks a request and
// the leader checks it again when it is forwarded.
func setupACL(sf *serverFlags, tlsOn bool, reloads *[]reloader, p *peers, log *slog.Logger) (*httpapi.ACL, error) {
	warnExposed(log, sf.httpAddr, sf.cluster.RaftAddr, tlsOn, sf.aclFile != "")
	if sf.aclFile == "" {
		return nil, nil
	}
	path, err := filepath.Abs(sf.aclFile) // reloads must not depend on the working directory
	if err != nil {
		return nil, usageError{fmt.Errorf("--acl-file %s: %w", sf.aclFile, err)}
	}
	rules, err := httpapi.LoadACLFile(path)
	if err != nil {
		return nil, usageError{fmt.Errorf("--acl-file: %w", err)}
	}
	acl := httpapi.NewACL(rules)
	p.token = acl.ManagementToken
	logRules := func(msg string, rs *httpapi.ACLRules) {
		// Names only: a secret never reaches the log.
		log.Info(msg, "file", rs.Source(), "default_policy", rs.DefaultPolicy(), "tokens", strings.Join(rs.TokenNames(), ","))
	}
	logRules("ACLs on: requests need tokens", rules)
	*reloads = append(*reloads, reloader{name: "acl file " + path, fn: func() error {
		rs, err := httpapi.LoadACLFile(path)
		if err != nil {
			return err
		}
		acl.Set(rs)
		logRules("ACL rules reloaded", rs)
		return nil
	}})
	return acl, nil
}

// warnExposed logs a warning for each listener on a non-loopback address
// that lacks protection: the HTTP API without TLS or without an ACL file,
// Raft without TLS (tokens cannot protect Raft; only TLS's node
// certificates do).
func warnExposed(log *slog.Logger, httpAddr, raftAddr string, tlsOn, aclOn bool) {
	if exposedAddr(httpAddr) {
		var missing []string
		if !tlsOn {
			missing = append(missing, "TLS (--tls-cert-file, --tls-key-file, --tls-ca-file)")
		}
		if !aclOn {
			missing = append(missing, "ACLs (--acl-file)")
		}
		if len(missing) > 0 {
			log.Warn("the HTTP API listens on a non-loopback address without "+strings.Join(missing, " and ")+
				": anyone who can reach it can read and change data or membership", "http_addr", httpAddr)
		}
	}
	if exposedAddr(raftAddr) && !tlsOn {
		log.Warn("Raft listens on a non-loopback address without TLS (--tls-cert-file, --tls-key-file, --tls-ca-file): anyone who can reach it can send Raft traffic to this node",
			"raft_addr", raftAddr)
	}
}

// exposedAddr reports whether a listen address may be reachable from other
// machines: anything but a loopback IP or "localhost" (an empty host means
// every interface; a host name is taken as exposed).
func exposedAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}

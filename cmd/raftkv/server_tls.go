package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/spf13/pflag"

	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/internal/tlsutil"
)

// tlsFlags are the server's TLS flags.
type tlsFlags struct {
	certFile, keyFile, caFile string
	verifyIncoming            bool
}

func addServerTLSFlags(f *pflag.FlagSet, tf *tlsFlags) {
	f.StringVar(&tf.certFile, "tls-cert-file", "", "PEM certificate of this node; with --tls-key-file and --tls-ca-file turns TLS on for the HTTP API, Raft and node-to-node traffic (reloaded on SIGHUP)")
	f.StringVar(&tf.keyFile, "tls-key-file", "", "PEM private key of --tls-cert-file")
	f.StringVar(&tf.caFile, "tls-ca-file", "", "PEM CA bundle that every node's and client's certificate must chain to")
	f.BoolVar(&tf.verifyIncoming, "tls-verify-incoming", true, "with TLS on, HTTP API clients must present a certificate signed by the CA (false: any HTTPS client; Raft always requires a node certificate)")
}

// serverTLS is a running server's TLS material. A nil *serverTLS means TLS
// is off; its methods then leave everything plain.
type serverTLS struct {
	holder         *tlsutil.Holder
	verifyIncoming bool
}

// setupServerTLS loads the TLS files when the flags ask for TLS, secures
// the Raft transport in cfg, and registers the SIGHUP reloader. It returns
// nil when TLS is off.
func setupServerTLS(tf tlsFlags, cfg *cluster.Config, reloads *[]reloader, log *slog.Logger) (*serverTLS, error) {
	set := 0
	for _, v := range []string{tf.certFile, tf.keyFile, tf.caFile} {
		if v != "" {
			set++
		}
	}
	switch set {
	case 0:
		return nil, nil
	case 3:
	default:
		return nil, usageError{errors.New("--tls-cert-file, --tls-key-file and --tls-ca-file go together: give all three or none")}
	}
	h, err := tlsutil.Load(tlsutil.Files{Cert: tf.certFile, Key: tf.keyFile, CA: tf.caFile})
	if err != nil {
		return nil, fmt.Errorf("load TLS files: %w", err)
	}
	// Raft is always mutual: a peer without a node certificate of this CA
	// can neither join nor send RPCs.
	cfg.TLS = &cluster.TransportTLS{Server: h.PeerServerConfig(), Client: h.ClientConfig}
	*reloads = append(*reloads, reloader{name: "tls certificates", fn: func() error {
		if err := h.Reload(); err != nil {
			return err
		}
		logCert(log, "TLS certificate reloaded", h)
		return nil
	}})
	logCert(log, "TLS on", h, "verify_incoming", tf.verifyIncoming)
	return &serverTLS{holder: h, verifyIncoming: tf.verifyIncoming}, nil
}

func logCert(log *slog.Logger, msg string, h *tlsutil.Holder, extra ...any) {
	leaf := h.Leaf()
	args := append([]any{"subject", leaf.Subject.CommonName, "serial", leaf.SerialNumber.Text(16),
		"not_after", leaf.NotAfter.UTC().Format("2006-01-02T15:04:05Z"), "cert_file", h.Files().Cert}, extra...)
	log.Info(msg, args...)
}

// listener makes ln serve TLS (HTTPS). With verify-incoming, clients must
// present a certificate chaining to the CA; without it, a client
// certificate is optional but verified when given (nodes always send
// theirs).
func (s *serverTLS) listener(ln net.Listener) net.Listener {
	if s == nil {
		return ln
	}
	auth := tls.RequireAndVerifyClientCert
	if !s.verifyIncoming {
		auth = tls.VerifyClientCertIfGiven
	}
	return tls.NewListener(ln, s.holder.ServerConfig(auth))
}

// peerTLS is how this node secures its HTTPS connections to other nodes
// (forwarding, read index, stats, joins): nil when TLS is off.
func (s *serverTLS) peerTLS() func(serverName string) *tls.Config {
	if s == nil {
		return nil
	}
	return s.holder.ClientConfig
}

// enabled reports whether TLS is on.
func (s *serverTLS) enabled() bool { return s != nil }

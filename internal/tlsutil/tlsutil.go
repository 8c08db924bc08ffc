// Package tlsutil loads the TLS material of raftkv nodes and clients from
// PEM files, swaps it in place when the files change (a server reloads on
// SIGHUP), and makes a development CA with node and client certificates
// (gen.go).
//
// A Holder never hands out its certificate once and for all: every
// configuration it returns reads the current pair and CA bundle when a
// handshake happens, so a reload applies to every new connection without a
// restart, and connections already open carry on with what they agreed.
package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
)

// Files names the PEM files of one party.
type Files struct {
	// Cert is the certificate, optionally followed by intermediates.
	Cert string
	// Key is the private key of Cert.
	Key string
	// CA is the bundle of CA certificates that the other side's certificate
	// must chain to.
	CA string
}

// Holder holds a certificate/key pair and a CA bundle loaded from Files.
// It is safe for concurrent use.
type Holder struct {
	files Files

	mu  sync.RWMutex
	cur *material
}

// material is one consistent, validated generation of the files.
type material struct {
	cert tls.Certificate // Leaf is set
	pool *x509.CertPool
}

// Load reads and validates f (see Reload).
func Load(f Files) (*Holder, error) {
	m, err := load(f)
	if err != nil {
		return nil, err
	}
	return &Holder{files: f, cur: m}, nil
}

// Reload rereads the files. The new material replaces the old only when it
// is complete and consistent: the certificate and key parse and belong
// together, the CA bundle parses and holds at least one certificate, and the
// certificate chains to that bundle. On any error the previous material
// stays in use and the error says what was wrong.
func (h *Holder) Reload() error {
	m, err := load(h.files)
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.cur = m
	h.mu.Unlock()
	return nil
}

// Files returns the file names the holder reads.
func (h *Holder) Files() Files { return h.files }

// Leaf returns the certificate currently served.
func (h *Holder) Leaf() *x509.Certificate { return h.current().cert.Leaf }

func (h *Holder) current() *material {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.cur
}

// certificate returns the current pair; the returned value is never
// modified afterwards (a reload replaces the whole material).
func (h *Holder) certificate() *tls.Certificate { return &h.current().cert }

// ServerConfig returns the configuration of a listener (the HTTP API).
// clientAuth says what clients must present: tls.RequireAndVerifyClientCert
// for a certificate chaining to the CA bundle, tls.VerifyClientCertIfGiven to
// let clients without one in (one that is presented must still verify).
// Session tickets are off so every connection is verified against the
// bundle in force when it is made.
func (h *Holder) ServerConfig(clientAuth tls.ClientAuthType) *tls.Config {
	return h.serverConfig(clientAuth, nil)
}

// PeerServerConfig returns the configuration of a listener that only other
// nodes may use (Raft): the client must present a certificate chaining to
// the CA bundle that is a node certificate, i.e. one that may also act as a
// server (extended key usage serverAuth, or no usage restriction). A
// client-only certificate (`raftkv tls cert --client`) is refused, so a CLI
// user's credentials cannot speak Raft.
func (h *Holder) PeerServerConfig() *tls.Config {
	return h.serverConfig(tls.RequireAndVerifyClientCert, func(cs tls.ConnectionState) error {
		if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
			return errors.New("tlsutil: peer presented no verified certificate")
		}
		if !IsNodeCert(cs.VerifiedChains[0][0]) {
			return fmt.Errorf("tlsutil: certificate %q is not a node certificate (no serverAuth usage)", cs.VerifiedChains[0][0].Subject.CommonName)
		}
		return nil
	})
}

// IsNodeCert reports whether c may act as a server: its extended key usages
// include serverAuth or any, or it has none (unrestricted).
func IsNodeCert(c *x509.Certificate) bool {
	if len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 {
		return true
	}
	return slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny)
}

func (h *Holder) serverConfig(clientAuth tls.ClientAuthType, verify func(tls.ConnectionState) error) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Each handshake gets a configuration built from the material
		// current at that moment.
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m := h.current()
			return &tls.Config{
				MinVersion:             tls.VersionTLS12,
				Certificates:           []tls.Certificate{m.cert},
				ClientAuth:             clientAuth,
				ClientCAs:              m.pool,
				VerifyConnection:       verify,
				SessionTicketsDisabled: true,
			}, nil
		},
	}
}

// ClientConfig returns the configuration for one connection to a server
// whose certificate must name serverName (a host name or IP address) and
// chain to the current CA bundle. The client certificate is the pair
// current at handshake time. Build one per connection: the CA bundle is
// the one current when ClientConfig is called.
func (h *Holder) ClientConfig(serverName string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: serverName,
		RootCAs:    h.current().pool,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return h.certificate(), nil
		},
	}
}

// ClientFiles builds a static client configuration from optional files:
// caFile (else the system roots) to verify the server, certFile and keyFile
// (both or neither) to present a client certificate.
func ClientFiles(caFile, certFile, keyFile string) (*tls.Config, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("a client certificate needs both a certificate file and a key file")
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		data, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read CA bundle: %w", err)
		}
		if cfg.RootCAs, err = ParseCABundle(data); err != nil {
			return nil, fmt.Errorf("CA bundle %s: %w", caFile, err)
		}
	}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate %s and key %s: %w", certFile, keyFile, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// ParseCABundle parses PEM CERTIFICATE blocks into a pool. Unlike
// x509.CertPool.AppendCertsFromPEM it fails on a block that does not parse
// or is not a certificate, and when there is no certificate at all.
func ParseCABundle(data []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		n++
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is %q, want CERTIFICATE", n, b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		pool.AddCert(c)
	}
	if n == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return pool, nil
}

func load(f Files) (*material, error) {
	if f.Cert == "" || f.Key == "" || f.CA == "" {
		return nil, errors.New("tlsutil: certificate, key and CA files are all required")
	}
	certPEM, err := os.ReadFile(f.Cert)
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(f.Key)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, fmt.Errorf("read CA bundle: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("certificate %s with key %s: %w", f.Cert, f.Key, err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("certificate %s: %w", f.Cert, err)
		}
	}
	pool, err := ParseCABundle(caPEM)
	if err != nil {
		return nil, fmt.Errorf("CA bundle %s: %w", f.CA, err)
	}
	inter := x509.NewCertPool()
	for _, der := range pair.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("certificate %s: intermediate: %w", f.Cert, err)
		}
		inter.AddCert(c)
	}
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{
		Roots:         pool,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, fmt.Errorf("certificate %s does not verify against CA bundle %s: %w", f.Cert, f.CA, err)
	}
	return &material{cert: pair, pool: pool}, nil
}

// ReadCertFile parses the first PEM certificate in path (for tools and
// tests that look at what a node serves).
func ReadCertFile(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

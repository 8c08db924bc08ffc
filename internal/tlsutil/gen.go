package tlsutil

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// A development CA: ECDSA P-256 keys, PKCS#8 PEM, random 128-bit serials.
// Good for test clusters and for getting started; production deployments
// should issue certificates from their own PKI.

// File names in a certificate directory.
const (
	CACertFile = "ca.pem"
	CAKeyFile  = "ca-key.pem"
)

// CertPaths returns the certificate and key file of name in dir:
// DIR/NAME.pem and DIR/NAME-key.pem.
func CertPaths(dir, name string) (cert, key string) {
	return filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
}

// CAPaths returns the CA certificate and key file in dir.
func CAPaths(dir string) (cert, key string) {
	return filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
}

// clockSkew backdates NotBefore so a peer whose clock is a little behind
// accepts a certificate issued a moment ago.
const clockSkew = time.Hour

// NewCA makes a self-signed CA certificate valid for validFor, and its key.
func NewCA(commonName string, validFor time.Duration) (certPEM, keyPEM []byte, err error) {
	if validFor <= 0 {
		return nil, nil, errors.New("validity must be positive")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"raftkv"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(validFor),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign CA certificate: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// CertRequest describes a certificate to issue.
type CertRequest struct {
	// Name is the subject common name (and, in a directory, the file name).
	Name string
	// Hosts are the DNS names and IP addresses the certificate is valid
	// for (subject alternative names). Required for a node certificate.
	Hosts []string
	// Client makes a client-only certificate (extended key usage
	// clientAuth): it authenticates to the HTTP API but is refused by the
	// Raft port. Otherwise the certificate is a node certificate with both
	// serverAuth and clientAuth, so one node certificate serves both sides
	// of mutual TLS.
	Client bool
	// ValidFor is the validity from now.
	ValidFor time.Duration
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidName reports why name cannot be a certificate name in a directory
// (it becomes NAME.pem and NAME-key.pem), or nil.
func ValidName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("certificate name %q: want 1-64 letters, digits, '.', '_' or '-', not starting with a dot or dash", name)
	}
	if name == "ca" || name == "ca-key" {
		return fmt.Errorf("certificate name %q is reserved for the CA", name)
	}
	return nil
}

// IssueCert signs a certificate for req with the CA in caCertPEM/caKeyPEM.
func IssueCert(caCertPEM, caKeyPEM []byte, req CertRequest) (certPEM, keyPEM []byte, err error) {
	if req.Name == "" {
		return nil, nil, errors.New("certificate name is required")
	}
	if req.ValidFor <= 0 {
		return nil, nil, errors.New("validity must be positive")
	}
	if !req.Client && len(req.Hosts) == 0 {
		return nil, nil, errors.New("a node certificate needs at least one host (DNS name or IP address)")
	}
	caCert, caKey, err := parseCA(caCertPEM, caKeyPEM)
	if err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	notAfter := now.Add(req.ValidFor)
	if notAfter.After(caCert.NotAfter) {
		notAfter = caCert.NotAfter // never outlive the CA
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: req.Name, Organization: []string{"raftkv"}},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if req.Client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	for _, h := range req.Hosts {
		h = strings.TrimSpace(h)
		switch {
		case h == "":
			return nil, nil, errors.New("empty host in the host list")
		case net.ParseIP(h) != nil:
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(h))
		case strings.ContainsAny(h, ":/ \t"):
			return nil, nil, fmt.Errorf("host %q: want a DNS name or an IP address, without port or scheme", h)
		default:
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("sign certificate %s: %w", req.Name, err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// WriteCA makes a CA in dir (ca.pem, ca-key.pem; the key mode 0600). It
// refuses to replace existing files unless force.
func WriteCA(dir string, validFor time.Duration, force bool) (certFile, keyFile string, err error) {
	certPEM, keyPEM, err := NewCA("raftkv development CA", validFor)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = CAPaths(dir)
	return certFile, keyFile, writeFiles(dir, force, []outFile{{keyFile, keyPEM, 0o600}, {certFile, certPEM, 0o644}})
}

// WriteCert issues req with the CA in dir and writes NAME.pem and
// NAME-key.pem (mode 0600) there. It refuses to replace existing files
// unless force.
func WriteCert(dir string, req CertRequest, force bool) (certFile, keyFile string, err error) {
	if err := ValidName(req.Name); err != nil {
		return "", "", err
	}
	caCertFile, caKeyFile := CAPaths(dir)
	caCertPEM, err := os.ReadFile(caCertFile)
	if err != nil {
		return "", "", fmt.Errorf("read CA certificate: %w", err)
	}
	caKeyPEM, err := os.ReadFile(caKeyFile)
	if err != nil {
		return "", "", fmt.Errorf("read CA key: %w", err)
	}
	certPEM, keyPEM, err := IssueCert(caCertPEM, caKeyPEM, req)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = CertPaths(dir, req.Name)
	return certFile, keyFile, writeFiles(dir, force, []outFile{{keyFile, keyPEM, 0o600}, {certFile, certPEM, 0o644}})
}

type outFile struct {
	path string
	data []byte
	mode os.FileMode
}

// writeFiles writes every file or, when one exists and !force, none
// (the error wraps fs.ErrExist). With force each file is replaced
// atomically (temp file + rename), so a reader sees the old or the new
// version, never half of one.
func writeFiles(dir string, force bool, files []outFile) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if !force {
		for _, f := range files {
			if _, err := os.Lstat(f.path); err == nil {
				return &fs.PathError{Op: "create", Path: f.path, Err: fs.ErrExist}
			} else if !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("check %s: %w", f.path, err)
			}
		}
	}
	var created []string
	for _, f := range files {
		if err := writeOne(f, force); err != nil {
			for _, p := range created {
				os.Remove(p)
			}
			return err
		}
		if !force {
			created = append(created, f.path)
		}
	}
	return nil
}

func writeOne(f outFile, force bool) error {
	if !force {
		// O_EXCL: never clobber a file that appeared since the check.
		out, err := os.OpenFile(f.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.mode)
		if err != nil {
			return fmt.Errorf("create %s: %w", f.path, err)
		}
		return finish(out, f)
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.path), "."+filepath.Base(f.path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create temp file for %s: %w", f.path, err)
	}
	if err := finish(tmp, f); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), f.path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("replace %s: %w", f.path, err)
	}
	return nil
}

// finish sets the mode (umask would otherwise loosen or tighten it),
// writes, syncs and closes out; on failure it removes the file.
func finish(out *os.File, f outFile) error {
	err := out.Chmod(f.mode)
	if err == nil {
		_, err = out.Write(f.data)
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(out.Name())
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	return nil
}

func parseCA(certPEM, keyPEM []byte) (*x509.Certificate, crypto.Signer, error) {
	b, _ := pem.Decode(certPEM)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, nil, errors.New("CA certificate: no PEM CERTIFICATE block")
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, nil, errors.New("CA certificate is not a CA (basic constraints)")
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, nil, errors.New("CA key: no PEM block")
	}
	var key any
	switch kb.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(kb.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(kb.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(kb.Bytes)
	default:
		err = fmt.Errorf("unsupported PEM block %q", kb.Type)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("CA key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("CA key: %T cannot sign", key)
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if pub, ok := signer.Public().(equaler); !ok || !pub.Equal(cert.PublicKey) {
		return nil, nil, errors.New("CA key does not belong to the CA certificate")
	}
	return cert, signer, nil
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil // never 0
}

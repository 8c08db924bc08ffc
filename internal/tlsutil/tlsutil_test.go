package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const year = 365 * 24 * time.Hour

// testDir makes a CA and the named certificates in a temp dir: node
// certificates for 127.0.0.1 and localhost, and "client" as a client-only
// certificate.
func testDir(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	if _, _, err := WriteCA(dir, year, false); err != nil {
		t.Fatalf("WriteCA: %v", err)
	}
	for _, n := range names {
		req := CertRequest{Name: n, Hosts: []string{"127.0.0.1", "localhost"}, ValidFor: year}
		if n == "client" {
			req = CertRequest{Name: n, Client: true, ValidFor: year}
		}
		if _, _, err := WriteCert(dir, req, false); err != nil {
			t.Fatalf("WriteCert %s: %v", n, err)
		}
	}
	return dir
}

func files(dir, name string) Files {
	c, k := CertPaths(dir, name)
	ca, _ := CAPaths(dir)
	return Files{Cert: c, Key: k, CA: ca}
}

func mustLoad(t *testing.T, f Files) *Holder {
	t.Helper()
	h, err := Load(f)
	if err != nil {
		t.Fatalf("Load %+v: %v", f, err)
	}
	return h
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	c, err := ReadCertFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// handshake runs one TLS connection over loopback TCP between a server
// using srv and a client using cli. The server writes "ok" after its side of
// the handshake succeeded, so a client refused by the server (which TLS 1.3
// reports only after the client's own handshake finished) sees an error
// here. It returns the server certificate the client saw and the errors of
// both sides.
func handshake(t *testing.T, srv, cli *tls.Config) (served *x509.Certificate, serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	srvDone := make(chan error, 1)
	go func() { // ends after one connection
		c, err := ln.Accept()
		if err != nil {
			srvDone <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Server(c, srv)
		if err := tc.Handshake(); err != nil {
			srvDone <- err
			return
		}
		_, err = tc.Write([]byte("ok"))
		srvDone <- err
	}()
	raw, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(raw, cli)
	clientErr = tc.Handshake()
	if clientErr == nil {
		served = tc.ConnectionState().PeerCertificates[0]
		buf := make([]byte, 2)
		_, clientErr = io.ReadFull(tc, buf)
	}
	raw.Close()
	return served, <-srvDone, clientErr
}

func TestGeneratedCertsVerify(t *testing.T) {
	dir := testDir(t, "n1", "client")
	caFile, caKey := CAPaths(dir)
	ca := readCert(t, caFile)
	if !ca.IsCA || ca.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("CA: IsCA %t, key %s; want a CA with an ECDSA key", ca.IsCA, ca.PublicKeyAlgorithm)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)

	node := readCert(t, filepath.Join(dir, "n1.pem"))
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := node.Verify(x509.VerifyOptions{Roots: roots, DNSName: "localhost", KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Errorf("node certificate for localhost, usage %d: %v", usage, err)
		}
	}
	if err := node.VerifyHostname("127.0.0.1"); err != nil {
		t.Errorf("node certificate for 127.0.0.1: %v", err)
	}
	if err := node.VerifyHostname("10.9.9.9"); err == nil {
		t.Error("node certificate verifies for 10.9.9.9, which it was not issued for")
	}
	if !IsNodeCert(node) {
		t.Error("IsNodeCert(node certificate) = false")
	}

	client := readCert(t, filepath.Join(dir, "client.pem"))
	if _, err := client.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate as a client: %v", err)
	}
	if _, err := client.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("client-only certificate verifies as a server")
	}
	if IsNodeCert(client) {
		t.Error("IsNodeCert(client-only certificate) = true")
	}
	if node.SerialNumber.Cmp(client.SerialNumber) == 0 {
		t.Error("two certificates share a serial number")
	}

	for _, f := range []string{caKey, filepath.Join(dir, "n1-key.pem"), filepath.Join(dir, "client-key.pem")} {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, st.Mode().Perm())
		}
	}

	// A real mutual-TLS handshake between the generated node certificate
	// and the client certificate.
	h := mustLoad(t, files(dir, "n1"))
	cli, err := ClientFiles(caFile, filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem"))
	if err != nil {
		t.Fatalf("ClientFiles: %v", err)
	}
	cli.ServerName = "127.0.0.1"
	served, serr, cerr := handshake(t, h.ServerConfig(tls.RequireAndVerifyClientCert), cli)
	if serr != nil || cerr != nil {
		t.Fatalf("mTLS handshake with generated certificates: server %v, client %v", serr, cerr)
	}
	if served.SerialNumber.Cmp(node.SerialNumber) != 0 {
		t.Errorf("server presented serial %s, want n1's %s", served.SerialNumber, node.SerialNumber)
	}

	// The server name is checked: the certificate is not valid for another host.
	bad := cli.Clone()
	bad.ServerName = "example.com"
	if _, _, cerr := handshake(t, h.ServerConfig(tls.RequireAndVerifyClientCert), bad); cerr == nil {
		t.Error("client accepted n1's certificate for server name example.com")
	}
}

func TestReloadKeepsOldPairOnBadFiles(t *testing.T) {
	dir := testDir(t, "n1", "n2")
	f := files(dir, "n1")
	h := mustLoad(t, f)
	orig := h.Leaf().SerialNumber
	peer := mustLoad(t, files(dir, "n2"))
	srv := h.ServerConfig(tls.RequireAndVerifyClientCert)

	seen := func() *big.Int {
		t.Helper()
		served, serr, cerr := handshake(t, srv, peer.ClientConfig("127.0.0.1"))
		if serr != nil || cerr != nil {
			t.Fatalf("handshake: server %v, client %v", serr, cerr)
		}
		return served.SerialNumber
	}
	if got := seen(); got.Cmp(orig) != 0 {
		t.Fatalf("served serial %s, want %s", got, orig)
	}

	snapshot := func() map[string][]byte {
		m := map[string][]byte{}
		for _, p := range []string{f.Cert, f.Key, f.CA} {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			m[p] = data
		}
		return m
	}
	good := snapshot()
	restore := func() {
		for p, data := range good {
			if err := os.WriteFile(p, data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	otherCA := testDir(t, "x")
	otherCert, otherKey := CertPaths(otherCA, "x")
	n2Cert, n2Key := CertPaths(dir, "n2")
	copyFile := func(from, to string) {
		data, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	bad := []struct {
		name    string
		break_  func()
		wantErr string
	}{
		{"garbage certificate", func() { os.WriteFile(f.Cert, []byte("not a certificate\n"), 0o600) }, "certificate"},
		{"truncated certificate", func() { os.WriteFile(f.Cert, good[f.Cert][:len(good[f.Cert])/2], 0o600) }, "certificate"},
		{"key of another certificate", func() { copyFile(n2Key, f.Key) }, "private key does not match"},
		{"certificate of another key", func() { copyFile(n2Cert, f.Cert) }, "private key does not match"},
		{"missing key", func() { os.Remove(f.Key) }, "read key"},
		{"garbage CA bundle", func() {
			os.WriteFile(f.CA, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o600)
		}, "CA bundle"},
		{"empty CA bundle", func() { os.WriteFile(f.CA, nil, 0o600) }, "no PEM certificate"},
		{"pair from another CA", func() { copyFile(otherCert, f.Cert); copyFile(otherKey, f.Key) }, "does not verify against CA bundle"},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			defer restore()
			b.break_()
			err := h.Reload()
			if err == nil {
				t.Fatal("Reload succeeded, want an error")
			}
			if !strings.Contains(err.Error(), b.wantErr) {
				t.Errorf("Reload error %q, want it to mention %q", err, b.wantErr)
			}
			if got := h.Leaf().SerialNumber; got.Cmp(orig) != 0 {
				t.Errorf("after a failed reload the holder has serial %s, want the old %s", got, orig)
			}
			if got := seen(); got.Cmp(orig) != 0 {
				t.Errorf("after a failed reload a new connection sees serial %s, want the old %s", got, orig)
			}
		})
	}

	// A good re-issue (new key, new serial) is swapped in for new connections.
	if _, _, err := WriteCert(dir, CertRequest{Name: "n1", Hosts: []string{"127.0.0.1"}, ValidFor: year}, true); err != nil {
		t.Fatalf("re-issue n1: %v", err)
	}
	want := readCert(t, f.Cert).SerialNumber
	if want.Cmp(orig) == 0 {
		t.Fatal("re-issued certificate kept its serial")
	}
	if err := h.Reload(); err != nil {
		t.Fatalf("Reload of a good re-issue: %v", err)
	}
	if got := h.Leaf().SerialNumber; got.Cmp(want) != 0 {
		t.Errorf("after reload the holder has serial %s, want %s", got, want)
	}
	if got := seen(); got.Cmp(want) != 0 {
		t.Errorf("after reload a new connection sees serial %s, want %s", got, want)
	}
	// The client side picks the reloaded pair up too: n1 as a client of n2.
	served, serr, cerr := handshake(t, peer.ServerConfig(tls.RequireAndVerifyClientCert), h.ClientConfig("localhost"))
	if serr != nil || cerr != nil || served == nil {
		t.Fatalf("n1 as client after reload: server %v, client %v", serr, cerr)
	}
}

func TestPeerServerConfigRequiresNodeCert(t *testing.T) {
	dir := testDir(t, "n1", "n2", "client")
	n1 := mustLoad(t, files(dir, "n1"))
	srv := n1.PeerServerConfig()
	caFile, _ := CAPaths(dir)

	// Another node: accepted.
	n2 := mustLoad(t, files(dir, "n2"))
	if _, serr, cerr := handshake(t, srv, n2.ClientConfig("127.0.0.1")); serr != nil || cerr != nil {
		t.Fatalf("node certificate refused: server %v, client %v", serr, cerr)
	}

	rogueDir := testDir(t, "rogue")
	rc, rk := CertPaths(rogueDir, "rogue")
	cc, ck := CertPaths(dir, "client")
	for _, tc := range []struct{ name, cert, key string }{
		{"no certificate", "", ""},
		{"client-only certificate of the right CA", cc, ck},
		{"node certificate of another CA", rc, rk},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cli, err := ClientFiles(caFile, tc.cert, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			cli.ServerName = "127.0.0.1"
			_, serr, cerr := handshake(t, srv, cli)
			if serr == nil {
				t.Error("server accepted the connection")
			}
			if cerr == nil {
				t.Error("client saw no refusal")
			}
		})
	}
}

func TestWriteRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	caCert, _, err := WriteCA(dir, year, false)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(caCert)
	if _, _, err := WriteCA(dir, year, false); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second WriteCA without force: %v, want fs.ErrExist", err)
	}
	if after, _ := os.ReadFile(caCert); string(after) != string(before) {
		t.Error("refused WriteCA changed ca.pem")
	}

	req := CertRequest{Name: "n1", Hosts: []string{"localhost"}, ValidFor: year}
	certFile, _, err := WriteCert(dir, req, false)
	if err != nil {
		t.Fatal(err)
	}
	first := readCert(t, certFile).SerialNumber
	if _, _, err := WriteCert(dir, req, false); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second WriteCert without force: %v, want fs.ErrExist", err)
	}
	if got := readCert(t, certFile).SerialNumber; got.Cmp(first) != 0 {
		t.Error("refused WriteCert changed the certificate")
	}
	if _, _, err := WriteCert(dir, req, true); err != nil {
		t.Fatalf("WriteCert with force: %v", err)
	}
	if got := readCert(t, certFile).SerialNumber; got.Cmp(first) == 0 {
		t.Error("forced WriteCert kept the old certificate")
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	if want := []string{"ca-key.pem", "ca.pem", "n1-key.pem", "n1.pem"}; !slices.Equal(names, want) {
		t.Errorf("directory holds %v, want %v (no temp files left)", names, want)
	}

	// Bad requests are refused before anything is written.
	for _, r := range []CertRequest{
		{Name: "../evil", Hosts: []string{"x"}, ValidFor: year},
		{Name: "ca", Hosts: []string{"x"}, ValidFor: year},
		{Name: "n2", ValidFor: year},                               // node cert without hosts
		{Name: "n3", Hosts: []string{"host:8501"}, ValidFor: year}, // port in host
	} {
		if _, _, err := WriteCert(dir, r, false); err == nil {
			t.Errorf("WriteCert(%+v) succeeded, want an error", r)
		}
	}
	if entries2, _ := os.ReadDir(dir); len(entries2) != len(entries) {
		t.Errorf("refused requests left files behind: %d entries, want %d", len(entries2), len(entries))
	}
}

func TestParseCABundle(t *testing.T) {
	dir := testDir(t)
	caFile, caKey := CAPaths(dir)
	ca, _ := os.ReadFile(caFile)
	key, _ := os.ReadFile(caKey)
	if _, err := ParseCABundle(append(append([]byte("# a comment\n"), ca...), ca...)); err != nil {
		t.Errorf("bundle of two certificates with a comment: %v", err)
	}
	for name, data := range map[string][]byte{
		"empty":    nil,
		"key":      key,
		"cert+key": append(append([]byte{}, ca...), key...),
		"text":     []byte("hello"),
	} {
		if _, err := ParseCABundle(data); err == nil {
			t.Errorf("ParseCABundle(%s) succeeded, want an error", name)
		}
	}
}

package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/auth/tlstest"
)

func startWithSecret(t *testing.T, dir, secret string) *Server {
	t.Helper()
	s, err := Start(context.Background(), Config{Listen: "127.0.0.1:0", DataDir: dir, BootstrapToken: secret})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func stop(t *testing.T, s *Server) {
	t.Helper()
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// get sends GET path with secret and returns the status and body.
func get(t *testing.T, s *Server, path, secret string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", s.URL()+path, nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	res, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

// newCA is a certificate authority of the test's own.
func newCA(t *testing.T) *tlstest.CA {
	t.Helper()
	ca, err := tlstest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// loopbackCert is a certificate of ca for 127.0.0.1, in files of a
// directory of its own.
func loopbackCert(t *testing.T, ca *tlstest.CA) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile, err := ca.ServerCert(t.TempDir(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestTransportSecurity_PlainHTTPOnlyOnLoopbackUnlessInsecureListen(t *testing.T) {
	t.Parallel()
	type listenCase struct {
		listen   string
		insecure bool
		ok       bool
	}
	var cases []listenCase
	for _, l := range []string{"127.0.0.1:8080", "127.1.2.3:0", "[::1]:8080", "localhost:8080", "[::ffff:127.0.0.1]:0"} {
		cases = append(cases, listenCase{l, false, true})
	}
	// Beyond loopback, only --insecure-listen allows plain HTTP.
	for _, l := range []string{"0.0.0.0:8080", ":8080", "[::]:8080", "192.0.2.10:8080", "isolation.example.com:8080"} {
		cases = append(cases, listenCase{l, false, false}, listenCase{l, true, true})
	}
	for _, tc := range cases {
		cfg, err := Config{Listen: tc.listen, InsecureListen: tc.insecure}.transportSecurity()
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s (insecure=%v): %v", tc.listen, tc.insecure, err)
		case !tc.ok && (err == nil || !strings.Contains(err.Error(), "--insecure-listen") || !strings.Contains(err.Error(), "--tls-cert")):
			t.Errorf("%s (insecure=%v): %v, want a refusal naming --tls-cert and --insecure-listen", tc.listen, tc.insecure, err)
		case cfg != nil:
			t.Errorf("%s: a TLS config without a certificate", tc.listen)
		}
	}
}

func TestStart_RefusesPlainHTTPBeyondLoopbackBeforeOpeningAnything(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	_, err := Start(context.Background(), Config{Listen: "0.0.0.0:0", DataDir: dir})
	if err == nil || !strings.Contains(err.Error(), "not a loopback address") {
		t.Fatalf("Start on 0.0.0.0 without TLS: %v", err)
	}
	if _, statErr := os.Stat(dir); !errors.Is(statErr, os.ErrNotExist) {
		t.Fatalf("the refused start created its data dir: %v", statErr)
	}
}

func TestStart_ServesHTTPSWithTLS12OrLater(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	certFile, keyFile := loopbackCert(t, ca)
	srv, err := Start(context.Background(), Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), TLSCert: certFile, TLSKey: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	if !strings.HasPrefix(srv.URL(), "https://") {
		t.Fatalf("URL %s", srv.URL())
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(ca.PEM))
	get := func(cfg *tls.Config) (int, error) {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		defer c.CloseIdleConnections()
		req, _ := http.NewRequest("GET", srv.URL()+"/v1/projects", nil)
		req.Header.Set("Authorization", "Bearer "+srv.AdminToken())
		res, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		defer res.Body.Close()
		_, _ = io.Copy(io.Discard, res.Body)
		return res.StatusCode, nil
	}
	if code, err := get(&tls.Config{RootCAs: pool}); err != nil || code != 200 {
		t.Fatalf("trusting the CA: %d %v", code, err)
	}
	var unknownAuthority x509.UnknownAuthorityError
	if _, err := get(&tls.Config{}); !errors.As(err, &unknownAuthority) {
		t.Fatalf("without the CA: %v, want an unknown-authority error", err)
	}
	if _, err := get(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}); err == nil || !strings.Contains(err.Error(), "protocol version") {
		t.Fatalf("TLS 1.1: %v, want a protocol version failure", err)
	}
	// Plain HTTP to the TLS port gets no API answer.
	if code, err := getPlain(strings.Replace(srv.URL(), "https://", "http://", 1) + "/healthz"); err == nil && code == 200 {
		t.Fatal("plain HTTP was served on the TLS port")
	}
}

func getPlain(url string) (int, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	res.Body.Close()
	return res.StatusCode, nil
}

func TestStart_RefusesAMismatchedOrMissingKeyPair(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	certA, _ := loopbackCert(t, ca)
	_, keyB := loopbackCert(t, ca)
	for name, cfg := range map[string]Config{
		"mismatched": {TLSCert: certA, TLSKey: keyB},
		"cert only":  {TLSCert: certA},
		"missing":    {TLSCert: filepath.Join(t.TempDir(), "nope.crt"), TLSKey: keyB},
	} {
		cfg.Listen, cfg.DataDir = "127.0.0.1:0", t.TempDir()
		if _, err := Start(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "tls") {
			t.Errorf("%s: %v, want an error naming the TLS flags", name, err)
		}
	}
}

func TestStart_CreatesTheDataDirAndItsFilesForTheOwnerOnly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "isolationd")
	srv := startWithSecret(t, dir, "isot_file-mode-test-token-0123456789")
	// A write after start: the WAL and shared-memory files exist now.
	if status, body := get(t, srv, "/v1/projects", "isot_unknown-so-a-denial-is-audited"); status != http.StatusUnauthorized {
		t.Fatalf("%d %s", status, body)
	}
	db := filepath.Join(dir, DatabaseFile)
	want := map[string]os.FileMode{dir: 0o700, filepath.Dir(dir): 0o700, db: 0o600, db + "-wal": 0o600, db + "-shm": 0o600}
	for p, mode := range want {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %04o, want %04o", p, fi.Mode().Perm(), mode)
		}
	}
	stop(t, srv)
}

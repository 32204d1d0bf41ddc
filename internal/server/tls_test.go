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

func TestTransportSecurity_PlainHTTPOnlyOnLoopbackUnlessInsecureListen(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		listen   string
		insecure bool
		ok       bool
	}{
		{"127.0.0.1:8080", false, true},
		{"127.1.2.3:0", false, true},
		{"[::1]:8080", false, true},
		{"localhost:8080", false, true},
		{"[::ffff:127.0.0.1]:0", false, true},
		{"0.0.0.0:8080", false, false},
		{":8080", false, false},
		{"[::]:8080", false, false},
		{"192.0.2.10:8080", false, false},
		{"isolation.example.com:8080", false, false},
		{"0.0.0.0:8080", true, true},
		{":8080", true, true},
	} {
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
	ca, err := tlstest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := ca.ServerCert(t.TempDir(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
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
	ca, err := tlstest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	certA, _, err := ca.ServerCert(t.TempDir(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	_, keyB, err := ca.ServerCert(t.TempDir(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
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

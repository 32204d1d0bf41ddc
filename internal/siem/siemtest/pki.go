// Package siemtest gives tests and benchmarks of SIEM export real
// receivers on loopback: a CA made on the spot, the distribution's
// rsyslog over TLS, and an HTTPS webhook receiver whose answers a test
// scripts.
package siemtest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/auth/tlstest"
)

// PKI is a CA and two certificates it signed, as PEM files: the
// receiver's (for 127.0.0.1 and localhost) and a client's.
type PKI struct {
	CA                    string
	ServerCert, ServerKey string
	ClientCert, ClientKey string
}

// NewPKI makes a CA, a server and a client certificate in dir.
func NewPKI(t testing.TB, dir string) PKI {
	t.Helper()
	ca, err := tlstest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	p := PKI{CA: filepath.Join(dir, "ca.pem")}
	if err := os.WriteFile(p.CA, []byte(ca.PEM), 0o600); err != nil {
		t.Fatal(err)
	}
	if p.ServerCert, p.ServerKey, err = ca.ServerCert(dir, "127.0.0.1", "localhost"); err != nil {
		t.Fatal(err)
	}
	if p.ClientCert, p.ClientKey, err = ca.ClientCert(dir, "isolationd"); err != nil {
		t.Fatal(err)
	}
	return p
}

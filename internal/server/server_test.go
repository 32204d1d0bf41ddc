package server

import (
	"context"
	"strings"
	"testing"
)

// A start that fails after the store is open must close what it opened and
// answer an error, not panic in its own cleanup.
func TestStart_FailingLateClosesWhatItOpenedAndReturnsTheError(t *testing.T) {
	dir := t.TempDir()
	_, err := Start(context.Background(), Config{Listen: "127.0.0.1:0", DataDir: dir, BootstrapToken: "short"})
	if err == nil || !strings.Contains(err.Error(), "at least 16 characters") {
		t.Fatalf("err = %v, want the bootstrap token length rule", err)
	}
	if strings.Contains(err.Error(), "short") {
		t.Fatalf("the error repeats the token: %v", err)
	}
	// The store was closed: a second start on the same directory opens it again.
	s, err := Start(context.Background(), Config{Listen: "127.0.0.1:0", DataDir: dir, BootstrapToken: "a-long-enough-bootstrap-token"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

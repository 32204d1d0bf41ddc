package scaleout

import (
	"os"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/replicatest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	replicatest.RemoveBinaries()
	os.Exit(code)
}

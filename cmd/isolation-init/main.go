// Command isolation-init is the init that runs as PID 1 of every
// environment's container: see internal/workload/initproc. isolationd
// bind-mounts it into the container (internal/workload/initspec); it is
// built as a static binary (CGO_ENABLED=0) so that it runs in any image.
package main

import (
	"os"

	"github.com/isolationhq/terraform-provider-isolation/internal/workload/initproc"
)

func main() {
	os.Exit(initproc.Main(os.Args[1:]))
}

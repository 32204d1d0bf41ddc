// Command pgserver runs a command beside a throwaway PostgreSQL:
//
//	go run ./tools/pgserver -- CMD ARGS...
//
// It starts a server on 127.0.0.1 in a temporary directory (initdb as the
// postgres user when run as root), runs CMD with ISOLATION_TEST_POSTGRES
// set to its admin database, then stops the server, removes the directory
// and exits with CMD's status. Without PostgreSQL's binaries it says so
// and runs CMD without the variable (the tests that need it skip, saying
// why).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/isolationhq/terraform-provider-isolation/internal/store/pgtest"
)

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: go run ./tools/pgserver -- CMD ARGS...")
		os.Exit(2)
	}
	os.Exit(run(args))
}

func run(args []string) int {
	env := os.Environ()
	srv, err := pgtest.Start(context.Background())
	switch {
	case errors.Is(err, pgtest.ErrNoBinaries):
		fmt.Fprintf(os.Stderr, "pgserver: %v; running %s without %s: the PostgreSQL tests skip\n", err, args[0], pgtest.Env)
	case err != nil:
		fmt.Fprintf(os.Stderr, "pgserver: %v\n", err)
		return 1
	default:
		defer func() {
			if err := srv.Close(); err != nil {
				fmt.Fprintf(os.Stderr, "pgserver: %v\n", err)
			}
		}()
		fmt.Fprintf(os.Stderr, "pgserver: PostgreSQL at %s for %s\n", srv.URL, args[0])
		env = append(env, pgtest.Env+"="+srv.URL)
	}
	cmd := exec.Command(args[0], args[1:]...) //nolint:gosec // G702: running the command it is given is this tool's job
	cmd.Stdin, cmd.Stdout, cmd.Stderr, cmd.Env = os.Stdin, os.Stdout, os.Stderr, env
	// An interrupt reaches CMD (same process group); the server is still
	// stopped once CMD ends.
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM)
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		fmt.Fprintf(os.Stderr, "pgserver: %v\n", err)
		return 1
	}
	return 0
}

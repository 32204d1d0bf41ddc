package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"syscall"

	"github.com/isolationhq/terraform-provider-isolation/internal/server"
)

// cleanup removes every kernel object, container, mount and volume the
// drivers made under a prefix: for uninstalling, or after a lost
// database. It refuses to run beside a server that uses them only by
// convention: stop isolationd first.
func cleanup(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cleanup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "", "the data directory isolationd served from (required: the runtime's disks are under it)")
	prefix := fs.String("netns-prefix", "", "the prefix isolationd served with (default iso)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dataDir == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: isolationd cleanup --data-dir DIR [--netns-prefix P]   (stop isolationd first)")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := server.Cleanup(ctx, server.Config{DataDir: *dataDir, NetnsPrefix: *prefix, Logger: logger}); err != nil {
		fmt.Fprintf(stderr, "isolationd cleanup: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, "removed every container, mount, volume, namespace and nftables table of the prefix")
	return 0
}

// Command isolationd is the environment-isolation control plane.
//
//	isolationd serve --listen 127.0.0.1:8080 --data-dir DIR [--driver simulate|netns]
//	                 [--address-pool CIDR] [--address-pool6 CIDR] [--netns-prefix P] [--audit-log FILE|-] [--rate-limit N --rate-burst N]
//	                 [--rate-limit-role viewer=5,editor=20:40] [--tls-cert F --tls-key F | --insecure-listen]
//	                 [--log-level debug|info|warn|error]
//	isolationd audit verify --data-dir DIR
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/api"
	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

const usage = `usage:
  isolationd serve --listen 127.0.0.1:8080 --data-dir DIR [flags]
  isolationd audit verify --data-dir DIR
Run "isolationd serve -h" for the serve flags.`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) >= 1 && args[0] == "serve":
		return serve(args[1:], stdout, stderr)
	case len(args) >= 2 && args[0] == "audit" && args[1] == "verify":
		return verify(args[2:], stdout, stderr)
	}
	fmt.Fprintln(stderr, usage)
	return 2
}

func serve(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "address to listen on")
	dataDir := fs.String("data-dir", "", "directory for the database and admin.token (required)")
	driver := fs.String("driver", "simulate", "enforcement driver: simulate or netns")
	pool := fs.String("address-pool", server.DefaultAddressPool, "CIDR environment addresses are allocated from")
	pool6 := fs.String("address-pool6", "", "netns driver: IPv6 prefix (at most /96) giving every environment an IPv6 address too, its IPv4 address in the low 32 bits (default: IPv4 only)")
	prefix := fs.String("netns-prefix", "", "netns driver: prefix of every namespace, link and nftables table it makes, 1-6 lowercase letters or digits (default iso)")
	auditLog := fs.String("audit-log", "", "also write audit events as JSON lines to FILE, or - for stdout")
	rateLimit := fs.Float64("rate-limit", 0, "requests per second per token (0: no limit)")
	rateBurst := fs.Int("rate-burst", 0, "burst of the per-token rate limit (default: the rate)")
	rateRoles := fs.String("rate-limit-role", "", "per-role rate limits replacing --rate-limit for tokens of those roles: role=rate[:burst],... (viewer=5,editor=20:40; 0 lifts the limit)")
	insecure := fs.Bool("insecure-listen", false, "allow plain HTTP on an address that is not loopback (tokens cross the network in clear text)")
	tlsCert := fs.String("tls-cert", "", "TLS certificate file (PEM); serve HTTPS")
	tlsKey := fs.String("tls-key", "", "TLS private key file (PEM)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	quota := fs.Int64("default-environment-quota", 0, "environment quota of projects created without one (0: no limit); admins change a project's with environment_quota")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dataDir == "" {
		fmt.Fprintln(stderr, "isolationd serve: --data-dir is required")
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "isolationd serve: --log-level: %v\n", err)
		return 2
	}
	if fe := apiv1.ValidateEnvironmentQuota("--default-environment-quota", *quota); fe != nil {
		fmt.Fprintf(stderr, "isolationd serve: %s %s\n", fe[0].Field, fe[0].Message)
		return 2
	}
	roleLimits, err := api.ParseRoleRateLimits(*rateRoles)
	if err != nil {
		fmt.Fprintf(stderr, "isolationd serve: --rate-limit-role: %v\n", err)
		return 2
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg := server.Config{
		Listen: *listen, DataDir: *dataDir, BootstrapToken: os.Getenv("ISOLATIOND_BOOTSTRAP_TOKEN"),
		Driver: *driver, AddressPool: *pool, AddressPool6: *pool6, NetnsPrefix: *prefix, RateLimit: *rateLimit, RateBurst: *rateBurst, RoleRateLimits: roleLimits,
		TLSCert: *tlsCert, TLSKey: *tlsKey, InsecureListen: *insecure, Logger: logger,
		DefaultEnvironmentQuota: *quota,
	}
	if *auditLog != "" {
		w, closeLog, err := openAuditLog(*auditLog, stdout)
		if err != nil {
			fmt.Fprintf(stderr, "isolationd serve: --audit-log: %v\n", err)
			return 1
		}
		defer closeLog()
		cfg.AuditLog = w
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	srv, err := server.Start(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "isolationd serve: %v\n", err)
		return 1
	}
	if p := srv.AdminTokenPath(); p != "" {
		abs, _ := filepath.Abs(p)
		if srv.GeneratedToken() {
			fmt.Fprintf(stdout, "generated the admin token; it is in %s (mode 0600)\n", abs)
		} else {
			fmt.Fprintf(stdout, "admin token: %s\n", abs)
		}
	}
	fmt.Fprintf(stdout, "isolationd listening on %s\n", srv.URL())

	select {
	case <-ctx.Done():
	case err := <-srv.Done():
		logger.Error("server stopped", "error", err.Error())
	}
	logger.Info("shutting down: draining requests")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		fmt.Fprintf(stderr, "isolationd serve: shutdown: %v\n", err)
		return 1
	}
	return 0
}

// openAuditLog opens the JSON-lines audit log: "-" is stdout, anything
// else a file appended to (mode 0600: events name actors and sources).
func openAuditLog(path string, stdout io.Writer) (io.Writer, func(), error) {
	if path == "-" {
		return stdout, func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
}

func verify(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "", "isolationd's data directory (required)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dataDir == "" {
		fmt.Fprintln(stderr, "isolationd audit verify: --data-dir is required")
		return 2
	}
	// Read-only: the server may be running on the same file, and verifying
	// must neither migrate it nor start a second writer next to it.
	ctx := context.Background()
	st, err := store.OpenSQLiteReadOnly(ctx, filepath.Join(*dataDir, server.DatabaseFile))
	if err != nil {
		fmt.Fprintf(stderr, "isolationd audit verify: %v\n", err)
		return 1
	}
	defer st.Close()
	res, err := store.VerifyAudit(ctx, st)
	if err != nil {
		fmt.Fprintf(stderr, "isolationd audit verify: %v\n", err)
		return 1
	}
	if !res.OK() {
		fmt.Fprintf(stderr, "audit chain BROKEN after %d good events: first broken link: %s\n", res.Events, res.Broken.String())
		return 1
	}
	fmt.Fprintf(stdout, "audit chain intact: %d events, last seq %d, last hash %s\n", res.Events, res.LastSeq, res.LastHash)
	return 0
}

// Command isolationd is the environment-isolation control plane.
//
//	isolationd serve --listen 127.0.0.1:8080 --data-dir DIR [--store sqlite|postgres://...] [--driver simulate|netns]
//	                 [--address-pool CIDR] [--address-pool6 CIDR] [--address-quarantine DURATION] [--netns-prefix P] [--uplink host|netns:NAME [--uplink-net CIDR]]
//	                 [--dns-upstream ADDR[:PORT]]... [--dns-min-ttl DURATION] [--dns-max-ttl DURATION] [--audit-log FILE|-] [--rate-limit N --rate-burst N]
//	                 [--rate-limit-role viewer=5,editor=20:40] [--anon-rate-limit N --anon-rate-burst N] [--audit-reserve-mib N]
//	                 [--exec-sessions-per-token N] [--flow-logs=true|false] [--flow-retention DURATION] [--flow-max-records N]
//	                 [--tls-cert F --tls-key F | --insecure-listen]
//	                 [--log-level debug|info|warn|error] [--runtime runc|none] [--init-binary PATH] [--runc PATH] [--userns auto|off]
//	                 [--siem URL]... [--siem-config FILE]...
//	isolationd audit verify --data-dir DIR | --store URL [--hmac-key-file FILE]
//	isolationd migrate --data-dir DIR | --store URL
//	isolationd store copy --from sqlite:PATH --to postgres://... [--hmac-key-file FILE]
//	isolationd audit export --data-dir DIR [--since SEQ] [--until SEQ] [--format json|ocsf|cef]
//	isolationd env list | exec ENV -- CMD... | shell ENV | logs ENV [-f]   (over the API: ISOLATION_ENDPOINT, ISOLATION_TOKEN)
//	isolationd image import NAME PATH | image list | image rm NAME
//	isolationd cleanup --data-dir DIR [--netns-prefix P]
//	isolationd version
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
	"github.com/isolationhq/terraform-provider-isolation/internal/audit"
	"github.com/isolationhq/terraform-provider-isolation/internal/ipam"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
	"github.com/isolationhq/terraform-provider-isolation/internal/siem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
	"github.com/isolationhq/terraform-provider-isolation/internal/version"
)

const usage = `usage:
  isolationd serve --listen 127.0.0.1:8080 --data-dir DIR [flags]
  isolationd audit verify --data-dir DIR | --store URL [--hmac-key-file FILE]
  isolationd migrate --data-dir DIR | --store URL
  isolationd store copy --from sqlite:PATH --to postgres://... [--hmac-key-file FILE]
  isolationd audit export --data-dir DIR [--since SEQ] [--until SEQ] [--format json|ocsf|cef]
  isolationd env list [--project P] [--label K=V]... [--state S] [-o table|json]
  isolationd env exec [-i] [flags] ENV -- CMD...
  isolationd env shell [flags] ENV [-- CMD...]
  isolationd env logs ENV [-f] [--tail N] [--since T]
  isolationd image import NAME PATH | image list | image rm NAME
  isolationd cleanup --data-dir DIR [--netns-prefix P]
  isolationd version
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
	case len(args) >= 2 && args[0] == "audit" && args[1] == "export":
		return auditExport(args[2:], stdout, stderr)
	case len(args) >= 1 && args[0] == "env":
		return env(args[1:], stdout, stderr)
	case len(args) >= 1 && args[0] == "image":
		return imageCommand(args[1:], stdout, stderr)
	case len(args) >= 1 && args[0] == "migrate":
		return migrate(args[1:], stdout, stderr)
	case len(args) >= 2 && args[0] == "store" && args[1] == "copy":
		return storeCopy(args[2:], stdout, stderr)
	case len(args) >= 1 && args[0] == "cleanup":
		return cleanup(args[1:], stdout, stderr)
	case len(args) == 1 && args[0] == "version":
		fmt.Fprintln(stdout, "isolationd", version.String())
		return 0
	}
	fmt.Fprintln(stderr, usage)
	return 2
}

func serve(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "address to listen on")
	dataDir := fs.String("data-dir", "", "directory for the database and admin.token (required)")
	storeFlag := fs.String("store", "sqlite", storeFlagHelp)
	driver := fs.String("driver", "simulate", "enforcement driver: simulate or netns")
	pool := fs.String("address-pool", apiv1.DefaultAddressPool, "CIDR environment addresses are allocated from")
	pool6 := fs.String("address-pool6", "", "netns driver: IPv6 prefix (at most /96) giving every environment an IPv6 address too, its IPv4 address in the low 32 bits (default: IPv4 only)")
	quarantine := fs.Duration("address-quarantine", ipam.DefaultQuarantine, "how long a freed environment address is kept from new environments, so that rules still naming it admit nobody new (after it, addresses are reused least recently freed first)")
	uplink := fs.String("uplink", "", "netns driver: connect the router namespace to host (the host's network, through a veth pair <prefix>router with an address on 169.254.201.0/30) or netns:NAME (a named namespace), masquerading environments' egress; absent: nothing on the host is touched")
	uplinkNet := fs.String("uplink-net", "", "netns driver: the uplink's link network, an IPv4 CIDR of at most /30 outside the address pool (default 169.254.201.0/30)")
	var dnsUpstreams stringsFlag
	fs.Var(&dnsUpstreams, "dns-upstream", "netns driver: a resolver the environments' DNS proxy forwards to, ADDR or ADDR:PORT (default port 53; repeatable, tried in order); absent: the proxy answers SERVFAIL")
	dnsMinTTL := fs.Duration("dns-min-ttl", 0, "netns driver: the least time an answer's addresses stay allowed for an fqdn rule, whatever its TTL (default 30s)")
	dnsMaxTTL := fs.Duration("dns-max-ttl", 0, "netns driver: the most time an answer's addresses stay allowed for an fqdn rule; longer TTLs are rewritten to it (default 1h)")
	prefix := fs.String("netns-prefix", "", "netns driver: prefix of every namespace, link and nftables table it makes, 1-6 lowercase letters or digits (default iso)")
	auditLog := fs.String("audit-log", "", "also write audit events as JSON lines to FILE, or - for stdout")
	auditKey := fs.String("audit-hmac-key-file", "", "key the audit chain: seal events with HMAC-SHA256 under the key in FILE (at least 32 bytes; openssl rand -hex 32 > FILE)")
	rateLimit := fs.Float64("rate-limit", 0, "requests per second per token (0: no limit)")
	rateBurst := fs.Int("rate-burst", 0, "burst of the per-token rate limit (default: the rate)")
	rateRoles := fs.String("rate-limit-role", "", "per-role rate limits replacing --rate-limit for tokens of those roles: role=rate[:burst],... (viewer=5,editor=20:40; 0 lifts the limit)")
	anonRate := fs.Float64("anon-rate-limit", 5, "requests per second per client address (IPv6: per /64) without a token the server knows; beyond it 429 (0: no limit)")
	anonBurst := fs.Int("anon-rate-burst", 20, "burst of the unauthenticated rate limit")
	reserveMiB := fs.Int64("audit-reserve-mib", 4, "MiB of disk held back beside the database and released when the disk fills, so that refused requests are still audited (0: none)")
	insecure := fs.Bool("insecure-listen", false, "allow plain HTTP on an address that is not loopback (tokens cross the network in clear text)")
	tlsCert := fs.String("tls-cert", "", "TLS certificate file (PEM); serve HTTPS")
	tlsKey := fs.String("tls-key", "", "TLS private key file (PEM)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	runtime := fs.String("runtime", "", "workload runtime: runc (the default with --driver netns: OCI containers under runc inside each environment's namespace) or none (network-only environments, workloads refused); the simulate driver records workloads and runs none")
	initBinary := fs.String("init-binary", "", "runc runtime: the static init every container runs as PID 1 (default: isolation-init beside this executable, then on PATH)")
	runcBinary := fs.String("runc", "", "runc runtime: the runc to run containers with, 1.2 or later with a user namespace (default: runc beside this executable, where make runtime-deps builds it, then on PATH)")
	userns := fs.String("userns", "auto", "runc runtime: run containers in a user namespace (container root is an unprivileged host uid): auto (when the kernel allows it) or off")
	execSessions := fs.Int("exec-sessions-per-token", api.DefaultExecSessionsPerToken, "exec sessions one token may have open at once (at least 1); beyond it 429")
	flowLogs := fs.Bool("flow-logs", true, "netns driver: record every flow environments open or receive, allowed or denied (GET /v1/flows)")
	flowRetention := fs.Duration("flow-retention", server.DefaultFlowRetention, "how long flow records are kept")
	flowMax := fs.Int("flow-max-records", server.DefaultFlowMaxRecords, "how many flow records are kept at most (the oldest go first)")
	quota := fs.Int64("default-environment-quota", 1000, "environment quota of projects created without one (0: no limit), so that one project cannot take the whole address pool; admins change a project's with environment_quota")
	var siemURLs, siemFiles repeated
	fs.Var(&siemURLs, "siem", siemFlagHelp)
	fs.Var(&siemFiles, "siem-config", "read SIEM sinks from FILE: one --siem URL a line, # comments (keeps webhook secrets off the command line; repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dataDir == "" {
		fmt.Fprintln(stderr, "isolationd serve: --data-dir is required")
		return 2
	}
	*storeFlag = storeValue(fs, *storeFlag)
	if _, err := store.ParseLocation(*storeFlag); err != nil {
		fmt.Fprintf(stderr, "isolationd serve: --store: %v\n", err)
		return 2
	}
	if *quarantine <= 0 {
		fmt.Fprintf(stderr, "isolationd serve: --address-quarantine %s: must be positive: an address handed out again at once lets the next environment through rules written for the last\n", *quarantine)
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
	roleLimits, err := parseRoleRateLimits(*rateRoles)
	if err != nil {
		fmt.Fprintf(stderr, "isolationd serve: --rate-limit-role: %v\n", err)
		return 2
	}
	if *execSessions < 1 {
		fmt.Fprintf(stderr, "isolationd serve: --exec-sessions-per-token %d: must be at least 1\n", *execSessions)
		return 2
	}
	if *flowRetention <= 0 {
		fmt.Fprintf(stderr, "isolationd serve: --flow-retention %s: must be a positive duration, such as 168h\n", *flowRetention)
		return 2
	}
	if *flowMax < 1 {
		fmt.Fprintf(stderr, "isolationd serve: --flow-max-records %d: must be at least 1\n", *flowMax)
		return 2
	}
	if *anonRate < 0 || *anonBurst < 0 || *reserveMiB < 0 {
		fmt.Fprintln(stderr, "isolationd serve: --anon-rate-limit, --anon-rate-burst and --audit-reserve-mib must be 0 or more")
		return 2
	}
	sinks, err := siem.ParseSinks(siemURLs, siemFiles)
	if err != nil {
		fmt.Fprintf(stderr, "isolationd serve: %v\n", err)
		return 2
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg := server.Config{
		Listen: *listen, DataDir: *dataDir, Store: *storeFlag, BootstrapToken: os.Getenv("ISOLATIOND_BOOTSTRAP_TOKEN"),
		Driver: *driver, AddressPool: *pool, AddressPool6: *pool6, AddressQuarantine: *quarantine, NetnsPrefix: *prefix, NetnsUplink: *uplink, NetnsUplinkNet: *uplinkNet,
		DNSUpstreams: dnsUpstreams, DNSMinTTL: *dnsMinTTL, DNSMaxTTL: *dnsMaxTTL, RateLimit: *rateLimit, RateBurst: *rateBurst, RoleRateLimits: roleLimits,
		AnonRateLimit: api.RateLimit{PerSecond: *anonRate, Burst: *anonBurst}, ReserveBytes: *reserveMiB << 20,
		TLSCert: *tlsCert, TLSKey: *tlsKey, InsecureListen: *insecure, Logger: logger,
		DefaultEnvironmentQuota: *quota, ExecSessionsPerToken: *execSessions,
		FlowLogsOff: !*flowLogs, FlowRetention: *flowRetention, FlowMaxRecords: *flowMax,
		Runtime: *runtime, InitBinary: *initBinary, RuncBinary: *runcBinary, Userns: *userns,
		SIEM: sinks,
	}
	if *auditKey != "" {
		if cfg.AuditKey, err = audit.ReadKeyFile(*auditKey); err != nil {
			fmt.Fprintf(stderr, "isolationd serve: --audit-hmac-key-file: %v\n", err)
			return 2
		}
	}
	switch *auditLog {
	case "":
	case "-":
		cfg.AuditLog = stdout
	default:
		// A file: the sink reads where it stopped, to resume after a crash.
		if cfg.AuditSink, err = audit.OpenSink(*auditLog); err != nil {
			fmt.Fprintf(stderr, "isolationd serve: --audit-log: %v\n", err)
			return 1
		}
		defer cfg.AuditSink.Close()
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

func verify(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "", "isolationd's data directory, whose SQLite file --store sqlite means")
	storeFlag := fs.String("store", "sqlite", storeFlagHelp)
	keyFile := fs.String("hmac-key-file", "", "the HMAC key the chain was sealed with (serve --audit-hmac-key-file); required for a keyed chain")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	loc, err := locate(storeValue(fs, *storeFlag), *dataDir)
	if err != nil {
		fmt.Fprintf(stderr, "isolationd audit verify: %v\n", err)
		return 2
	}
	key, err := readKey(*keyFile)
	if err != nil {
		fmt.Fprintf(stderr, "isolationd audit verify: --hmac-key-file: %v\n", err)
		return 2
	}
	ctx := context.Background()
	st, closeStore, err := openAuditReader(ctx, loc)
	if err != nil {
		fmt.Fprintf(stderr, "isolationd audit verify: %s\n", store.RedactDSN(err.Error()))
		return 1
	}
	defer func() { _ = closeStore() }()
	res, err := store.VerifyAuditWithKey(ctx, st, key)
	if err != nil {
		fmt.Fprintf(stderr, "isolationd audit verify: %v\n", err)
		return 1
	}
	switch {
	case !res.OK() && res.Broken.NeedsKey:
		fmt.Fprintf(stderr, "audit chain is KEYED (HMAC-SHA256, key id %s) and cannot be verified without its key: %d events verified before it; "+
			"first keyed link: %s; give --hmac-key-file with the key the server was started with\n", res.Broken.KeyID, res.Events, res.Broken.String())
		return 1
	case !res.OK():
		fmt.Fprintf(stderr, "audit chain BROKEN after %d good events: first broken link: %s\n", res.Events, res.Broken.String())
		return 1
	case key != nil && !res.Keyed():
		// Whoever can write the database could have re-sealed it unkeyed.
		fmt.Fprintf(stderr, "audit chain is NOT KEYED: %d events, none sealed with the key given (key id %s), "+
			"though a chain once keyed stays keyed: it was never keyed, or was rewritten without the key\n", res.Events, key.ID())
		return 1
	}
	fmt.Fprintf(stdout, "audit chain intact: %d events, last seq %d, last hash %s; %s\n", res.Events, res.LastSeq, res.LastHash, keyedness(res))
	return 0
}

// keyedness says how the chain was sealed, for audit verify's report.
func keyedness(res audit.Result) string {
	switch {
	case !res.Keyed():
		return "not keyed (SHA-256)"
	case res.FirstKeyedSeq > 1:
		return fmt.Sprintf("keyed (HMAC-SHA256, key id %s) from seq %d; seq 1 to %d predate the key (SHA-256)", res.KeyID, res.FirstKeyedSeq, res.FirstKeyedSeq-1)
	}
	return fmt.Sprintf("keyed (HMAC-SHA256, key id %s)", res.KeyID)
}

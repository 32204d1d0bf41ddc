package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
)

// Environment variables of the commands that talk to a running isolationd
// over its API, named as the provider's.
const (
	envEndpoint  = "ISOLATION_ENDPOINT"
	envToken     = "ISOLATION_TOKEN"
	envCACertPEM = "ISOLATION_CA_CERT_PEM"
	envInsecure  = "ISOLATION_INSECURE"
)

// envCommand is a subcommand of `isolationd env`: it acts on
// environments, one named by ENV (see resolveEnvironment), over the API.
type envCommand struct {
	name    string
	usage   string // the arguments after "isolationd env NAME"
	summary string
	run     func(ctx context.Context, c *client.Client, args []string, std stdio) int
}

// stdio is a command's standard streams.
type stdio struct {
	in       io.Reader
	out, err io.Writer
}

// envCommands are the subcommands of `isolationd env`, in the order the
// usage lists them.
var envCommands = []envCommand{
	{name: "list", usage: envListUsage, summary: "list the environments the token can see, with their state, workload and address", run: envList},
	{name: "exec", usage: envExecUsage, summary: "run CMD in the environment's container; exits with its exit code (125: isolationd failed); -i streams stdin to it", run: envExec},
	{name: "shell", usage: envShellUsage, summary: "an interactive terminal in the environment's container (default /bin/sh); exits with the shell's exit code", run: envShell},
	{name: "logs", usage: envLogsUsage, summary: "print the workload's output (stdout and stderr); -f follows it until interrupted", run: envLogs},
	{name: "extend", usage: envExtendUsage, summary: "make the environment expire DURATION from now (such as 2h or 90m), as a changed ttl_seconds does in Terraform", run: envExtend},
}

func envUsage() string {
	var b strings.Builder
	b.WriteString("usage:\n")
	for _, c := range envCommands {
		fmt.Fprintf(&b, "  isolationd env %s %s\n      %s\n", c.name, c.usage, c.summary)
	}
	fmt.Fprintf(&b, "ENV is an environment id or PROJECT/NAME. The server is %s, with the token %s.", envEndpoint, envToken)
	return b.String()
}

// env runs `isolationd env ...` on the process's standard streams; it
// ends on SIGINT, SIGTERM or SIGHUP (see interrupted).
func env(args []string, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(signals)
	go func() {
		select {
		case sig := <-signals:
			cancel(interruption{sig.(syscall.Signal)})
		case <-ctx.Done():
		}
	}()
	return envContext(ctx, args, stdio{in: os.Stdin, out: stdout, err: stderr})
}

// interruption is the cause of an env command's context when a signal
// ended it.
type interruption struct{ sig syscall.Signal }

func (i interruption) Error() string { return "interrupted by " + unix.SignalName(i.sig) }

// interrupted is the exit code of a command a signal ended, 128+N as a
// shell reports it, when one did.
func interrupted(ctx context.Context) (int, bool) {
	var i interruption
	if errors.As(context.Cause(ctx), &i) {
		return 128 + int(i.sig), true
	}
	return 0, false
}

func envContext(ctx context.Context, args []string, std stdio) int {
	if len(args) > 0 {
		for _, cmd := range envCommands {
			if cmd.name != args[0] {
				continue
			}
			c, err := apiClient()
			if err != nil {
				fmt.Fprintf(std.err, "isolationd env %s: %v\n", cmd.name, err)
				return 2
			}
			return cmd.run(ctx, c, args[1:], std)
		}
	}
	fmt.Fprintln(std.err, envUsage())
	return 2
}

// envFlags is the flag set of `isolationd env NAME`, whose usage is
// "isolationd env NAME usage" and the flags.
func envFlags(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("env "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: isolationd env %s %s\n", name, usage)
		fs.PrintDefaults()
	}
	return fs
}

// apiClient is the API client of ISOLATION_ENDPOINT and ISOLATION_TOKEN
// (and ISOLATION_CA_CERT_PEM, ISOLATION_INSECURE), as the provider reads them.
func apiClient() (*client.Client, error) {
	cfg := client.Config{
		Endpoint:  os.Getenv(envEndpoint),
		Token:     os.Getenv(envToken),
		CACertPEM: os.Getenv(envCACertPEM),
		UserAgent: "isolationd-cli",
	}
	if cfg.Endpoint == "" || cfg.Token == "" {
		return nil, fmt.Errorf("set %s to the server's URL and %s to an API token", envEndpoint, envToken)
	}
	if s := os.Getenv(envInsecure); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return nil, fmt.Errorf("%s=%q: must be true or false", envInsecure, s)
		}
		cfg.Insecure = b
	}
	c, err := client.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s, %s: %w", envEndpoint, envToken, err)
	}
	return c, nil
}

// resolveEnvironment finds the environment ref names: PROJECT/NAME (by
// the project's name, then the environment's within it), else an id.
func resolveEnvironment(ctx context.Context, c *client.Client, ref string) (*apiv1.Environment, error) {
	project, name, ok := strings.Cut(ref, "/")
	if !ok {
		e, err := c.Environments().Get(ctx, ref)
		if client.IsNotFound(err) {
			return nil, fmt.Errorf("no environment %q (or not one your token can see); name one by its id or as PROJECT/NAME", ref)
		}
		return e, err
	}
	projectID, err := findProject(ctx, c, project)
	if err != nil {
		return nil, err
	}
	envs, err := c.Environments().List(ctx, client.ListOptions{ProjectID: projectID})
	if err != nil {
		return nil, err
	}
	var found *apiv1.Environment
	for i, e := range envs {
		// One being deleted gives way to a new one of the same name.
		if e.Name == name && (found == nil || apiv1.StateIsLeaving(found.State)) {
			found = &envs[i]
		}
	}
	if found == nil {
		return nil, fmt.Errorf("no environment named %q in project %q", name, project)
	}
	return found, nil
}

// findProject is the id of the project named ref (or of id ref). A token
// that may not list projects (a developer's) knows its one project from
// whoami.
func findProject(ctx context.Context, c *client.Client, ref string) (string, error) {
	projects, err := c.Projects().List(ctx, client.ListOptions{})
	switch {
	case client.StatusCode(err) == http.StatusForbidden:
		who, werr := c.WhoAmI(ctx)
		if werr != nil {
			return "", werr
		}
		if who.ProjectID != "" && (who.ProjectName == ref || who.ProjectID == ref) {
			return who.ProjectID, nil
		}
	case err != nil:
		return "", err
	}
	for _, p := range projects {
		if p.Name == ref || p.ID == ref {
			return p.ID, nil
		}
	}
	return "", fmt.Errorf("no project named %q (or not one your token can see)", ref)
}

// projectNames are the names of the projects the token can see, by id,
// to show beside environments; empty when it can see none by name.
func projectNames(ctx context.Context, c *client.Client) map[string]string {
	names := map[string]string{}
	projects, err := c.Projects().List(ctx, client.ListOptions{})
	if client.StatusCode(err) == http.StatusForbidden {
		if who, err := c.WhoAmI(ctx); err == nil && who.ProjectName != "" {
			names[who.ProjectID] = who.ProjectName
		}
	}
	for _, p := range projects {
		names[p.ID] = p.Name
	}
	return names
}

// keyValues is a repeatable K=V flag (--label, -e).
type keyValues map[string]string

func (kv keyValues) String() string {
	parts := make([]string, 0, len(kv))
	for k, v := range kv {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, ",")
}

func (kv keyValues) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q: must be K=V", s)
	}
	kv[k] = v
	return nil
}

const envListUsage = "[--project P] [--label K=V]... [--state S] [-o table|json]"

func envList(ctx context.Context, c *client.Client, args []string, std stdio) int {
	fs := envFlags("list", envListUsage, std.err)
	project := fs.String("project", "", "only the environments of project P (a name or an id)")
	labels := keyValues{}
	fs.Var(labels, "label", "only the environments labelled K=V (repeat: every one)")
	state := fs.String("state", "", "only the environments in state S (pending, ready, failed, ...)")
	output := fs.String("o", "table", "output: table, or json (the API's environments)")
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	if len(rest) != 0 || (*output != "table" && *output != "json") {
		fs.Usage()
		return 2
	}
	opts := client.ListOptions{Labels: labels, State: *state}
	if *project != "" {
		if opts.ProjectID, err = findProject(ctx, c, *project); err != nil {
			fmt.Fprintf(std.err, "isolationd env list: %v\n", err)
			return 1
		}
	}
	envs, err := c.Environments().List(ctx, opts)
	if err != nil {
		fmt.Fprintf(std.err, "isolationd env list: %v\n", err)
		return 1
	}
	if *output == "json" {
		if envs == nil {
			envs = []apiv1.Environment{}
		}
		enc := json.NewEncoder(std.out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(envs); err != nil {
			return 1
		}
		return 0
	}
	names := projectNames(ctx, c)
	tw := tabwriter.NewWriter(std.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPROJECT\tNAME\tSTATE\tWORKLOAD\tADDRESS\tAGE")
	for _, e := range envs {
		project := e.ProjectID
		if n, ok := names[e.ProjectID]; ok {
			project = n
		}
		workload := "-"
		if e.Workload != nil {
			workload = e.Workload.State
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, project, e.Name, e.State, workload, orDash(e.Enforcement.Address), age(time.Since(e.CreatedAt)))
	}
	if err := tw.Flush(); err != nil {
		return 1
	}
	return 0
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// age is d in its largest unit, as ps and kubectl show ages: 45s, 12m, 3h, 9d.
func age(d time.Duration) string {
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + "m"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + "h"
	}
	return strconv.Itoa(int(d.Hours()/24)) + "d"
}

// parseInterspersed parses fs's flags wherever they are among args, so
// that `env logs ENV -f` reads like `env logs -f ENV`, and returns the
// other arguments. After "--" everything is an argument.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		remaining := fs.Args()
		if n := len(args) - len(remaining); n > 0 && args[n-1] == "--" {
			return append(rest, remaining...), nil
		}
		if len(remaining) == 0 {
			return rest, nil
		}
		rest, args = append(rest, remaining[0]), remaining[1:]
	}
}

const envLogsUsage = "ENV [-f] [--tail N] [--since T]"

func envLogs(ctx context.Context, c *client.Client, args []string, std stdio) int {
	stdout, stderr := std.out, std.err
	fs := envFlags("logs", envLogsUsage, stderr)
	var follow bool
	fs.BoolVar(&follow, "f", false, "follow: print new lines as they come, until interrupted")
	fs.BoolVar(&follow, "follow", false, "the same as -f")
	tail := fs.Int("tail", -1, "print only the last N lines (default: all the server keeps, at most 10000)")
	since := fs.String("since", "", "print only the lines since T: an RFC 3339 time or a duration such as 10m")
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	if len(rest) != 1 {
		fs.Usage()
		return 2
	}
	e, err := resolveEnvironment(ctx, c, rest[0])
	if err != nil {
		fmt.Fprintf(stderr, "isolationd env logs: %v\n", err)
		return 1
	}
	opts := client.LogOptions{Since: *since, Follow: follow}
	if *tail >= 0 {
		opts.Tail = tail
	}
	out := bufio.NewWriter(stdout)
	err = c.Environments().Logs(ctx, e.ID, opts, func(l apiv1.LogLine) error {
		if _, err := fmt.Fprintln(out, l.Line); err != nil {
			return err
		}
		if follow {
			return out.Flush()
		}
		return nil
	})
	if ferr := out.Flush(); err == nil {
		err = ferr
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "isolationd env logs: %s: %v\n", rest[0], err)
		return 1
	}
	return 0
}

const envExtendUsage = "ENV DURATION"

// envExtend restarts the environment's TTL from now with DURATION, in
// place: the server counts a changed ttl_seconds from the change.
func envExtend(ctx context.Context, c *client.Client, args []string, std stdio) int {
	fs := envFlags("extend", envExtendUsage, std.err)
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	if len(rest) != 2 {
		fs.Usage()
		return 2
	}
	d, err := time.ParseDuration(rest[1])
	if err != nil || d < time.Second || d%time.Second != 0 || d > apiv1.MaxTTLSeconds*time.Second {
		fmt.Fprintf(std.err, "isolationd env extend: DURATION %q must be whole seconds from 1s to %s (one year), such as 2h or 90m\n",
			rest[1], apiv1.MaxTTLSeconds*time.Second)
		return 2
	}
	e, err := resolveEnvironment(ctx, c, rest[0])
	if err != nil {
		fmt.Fprintf(std.err, "isolationd env extend: %v\n", err)
		return 1
	}
	ttl := int64(d / time.Second)
	// No If-Match: extending is the same whatever else changed meanwhile.
	e, err = c.Environments().Update(ctx, e.ID, apiv1.EnvironmentPatch{TTLSeconds: &ttl}, "")
	if err != nil {
		fmt.Fprintf(std.err, "isolationd env extend: %s: %v\n", rest[0], err)
		return 1
	}
	fmt.Fprintf(std.out, "%s expires at %s (ttl_seconds %d)\n", e.ID, e.ExpiresAt.UTC().Format(time.RFC3339), ttl)
	return 0
}

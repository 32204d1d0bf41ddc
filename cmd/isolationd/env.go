package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

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

// envCommand is a subcommand of `isolationd env`: it acts on one
// environment, named by ENV (see resolveEnvironment), over the API.
type envCommand struct {
	name    string
	usage   string // the arguments after "isolationd env NAME"
	summary string
	run     func(ctx context.Context, c *client.Client, args []string, stdout, stderr io.Writer) int
}

// envCommands are the subcommands of `isolationd env`, in the order the
// usage lists them.
var envCommands = []envCommand{
	{name: "logs", usage: envLogsUsage, summary: "print the workload's output (stdout and stderr); -f follows it until interrupted", run: envLogs},
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

// env runs `isolationd env ...`; it ends on SIGINT or SIGTERM.
func env(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return envContext(ctx, args, stdout, stderr)
}

func envContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		for _, cmd := range envCommands {
			if cmd.name != args[0] {
				continue
			}
			c, err := apiClient()
			if err != nil {
				fmt.Fprintf(stderr, "isolationd env %s: %v\n", cmd.name, err)
				return 2
			}
			return cmd.run(ctx, c, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintln(stderr, envUsage())
	return 2
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
	projects, err := c.Projects().List(ctx, client.ListOptions{})
	if err != nil {
		return nil, err
	}
	var projectID string
	for _, p := range projects {
		if p.Name == project {
			projectID = p.ID
		}
	}
	if projectID == "" {
		return nil, fmt.Errorf("no project named %q (or not one your token can see)", project)
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

func envLogs(ctx context.Context, c *client.Client, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("env logs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var follow bool
	fs.BoolVar(&follow, "f", false, "follow: print new lines as they come, until interrupted")
	fs.BoolVar(&follow, "follow", false, "the same as -f")
	tail := fs.Int("tail", -1, "print only the last N lines (default: all the server keeps, at most 10000)")
	since := fs.String("since", "", "print only the lines since T: an RFC 3339 time or a duration such as 10m")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: isolationd env logs "+envLogsUsage)
		fs.PrintDefaults()
	}
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

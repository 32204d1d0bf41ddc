package initproc

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload/initspec"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload/logs"
)

// Config is what the init is told to do: its flags (initspec), and the
// command after "--".
type Config struct {
	Restart string // one of apiv1.RestartPolicies
	// User is who the command runs as; nil (no --uid and --gid) leaves
	// the init's own, for tests that run it as an ordinary process.
	User        *syscall.Credential
	LogMaxBytes int64
	// Dir is where the status file and the logs go: initspec.Dir in a
	// container, elsewhere in tests.
	Dir string
	// Backoff is the restart delay after a run shorter than Healthy,
	// doubled after each consecutive one, up to MaxBackoff.
	Backoff, MaxBackoff time.Duration
	// Healthy is how long a run must last to reset the backoff and the
	// count of quick exits that makes the command crash-looping.
	Healthy time.Duration
	// Command is the program and its arguments; empty for an init that
	// only reaps and keeps the environment up.
	Command []string
	// ExecFD is the listening socket exec sessions come on
	// (initspec.FlagExecFD), -1 for none.
	ExecFD int
}

// Flags the runtime does not pass: the directory (initspec.Dir in a
// container) and the backoff's timing, which tests shorten.
const (
	flagDir        = "dir"
	flagBackoff    = "backoff"
	flagMaxBackoff = "max-backoff"
	flagHealthy    = "healthy-after"
)

func name(flag string) string { return strings.TrimPrefix(flag, "--") }

// Parse reads the init's arguments: flags, then "--" and the command.
func Parse(args []string) (Config, error) {
	var c Config
	flags, command := args, []string(nil)
	if i := slices.Index(args, "--"); i >= 0 {
		flags, command = args[:i], args[i+1:]
	}
	fs := flag.NewFlagSet("isolation-init", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var uid, gid, groups string
	fs.StringVar(&c.Restart, name(initspec.FlagRestart), apiv1.RestartPolicies[0], "restart policy: always, on-failure or never")
	fs.StringVar(&uid, name(initspec.FlagUID), "", "the user id the command runs as")
	fs.StringVar(&gid, name(initspec.FlagGID), "", "the group id the command runs as")
	fs.StringVar(&groups, name(initspec.FlagGroups), "", "the command's supplementary group ids, comma-separated")
	fs.Int64Var(&c.LogMaxBytes, name(initspec.FlagLogMaxBytes), logs.DefaultMaxBytes, "rotate the output log past this many bytes")
	fs.StringVar(&c.Dir, flagDir, initspec.Dir, "the directory of the status file and the logs")
	fs.DurationVar(&c.Backoff, flagBackoff, 100*time.Millisecond, "the first restart delay")
	fs.DurationVar(&c.MaxBackoff, flagMaxBackoff, 10*time.Second, "the longest restart delay")
	fs.IntVar(&c.ExecFD, name(initspec.FlagExecFD), -1, "the listening socket of exec sessions")
	fs.DurationVar(&c.Healthy, flagHealthy, 10*time.Second, "how long a run lasts to reset the backoff")
	if err := fs.Parse(flags); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("%q is not a flag: the command goes after \"--\"", fs.Arg(0))
	}
	c.Command = command
	if len(c.Command) > 0 && c.Command[0] == "" {
		return Config{}, errors.New("the command's program is empty")
	}
	if !slices.Contains(apiv1.RestartPolicies, c.Restart) {
		return Config{}, fmt.Errorf("%s %q: must be one of %s", initspec.FlagRestart, c.Restart, strings.Join(apiv1.RestartPolicies, ", "))
	}
	if c.ExecFD != -1 && c.ExecFD < 3 {
		return Config{}, fmt.Errorf("%s %d: must be a descriptor after stdin, stdout and stderr", initspec.FlagExecFD, c.ExecFD)
	}
	var err error
	if c.User, err = parseUser(uid, gid, groups); err != nil {
		return Config{}, err
	}
	if c.LogMaxBytes < logs.MinMaxBytes {
		return Config{}, fmt.Errorf("%s: must be at least %d", initspec.FlagLogMaxBytes, logs.MinMaxBytes)
	}
	if c.Backoff <= 0 || c.MaxBackoff < c.Backoff || c.Healthy <= 0 {
		return Config{}, fmt.Errorf("--%s, --%s and --%s must be positive, the first at most the second", flagBackoff, flagMaxBackoff, flagHealthy)
	}
	return c, nil
}

// parseUser reads --uid, --gid and --groups: the credential the command
// runs with (no supplementary group unless --groups names some), nil
// without --uid and --gid.
func parseUser(uid, gid, groups string) (*syscall.Credential, error) {
	if uid == "" && gid == "" {
		if groups != "" {
			return nil, fmt.Errorf("%s goes with %s and %s", initspec.FlagGroups, initspec.FlagUID, initspec.FlagGID)
		}
		return nil, nil
	}
	if uid == "" || gid == "" {
		return nil, fmt.Errorf("%s and %s go together", initspec.FlagUID, initspec.FlagGID)
	}
	id := func(flag, s string) (uint32, error) {
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return 0, fmt.Errorf("%s: %q is not a numeric id", flag, s)
		}
		return uint32(n), nil
	}
	u := &syscall.Credential{Groups: []uint32{}}
	var err error
	if u.Uid, err = id(initspec.FlagUID, uid); err != nil {
		return nil, err
	}
	if u.Gid, err = id(initspec.FlagGID, gid); err != nil {
		return nil, err
	}
	for g := range strings.SplitSeq(groups, ",") {
		if g == "" {
			continue
		}
		n, err := id(initspec.FlagGroups, g)
		if err != nil {
			return nil, err
		}
		u.Groups = append(u.Groups, n)
	}
	return u, nil
}

package main

import (
	"context"
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

	"golang.org/x/term"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
)

// execFailed is the exit code of exec and shell when isolationd or the
// API failed, not the command (docker exec's): every other code is the
// command's, but 2 for a command line that is wrong.
const execFailed = 125

// defaultShell is what env shell runs without a command.
const defaultShell = "/bin/sh"

const (
	envExecUsage  = "[-i] [--uid N] [--gid N] [-w DIR] [-e K=V]... [--timeout D] ENV -- CMD..."
	envShellUsage = "[--uid N] [--gid N] [-w DIR] [-e K=V]... [--timeout D] ENV [-- CMD...]"
)

// execFlags registers the flags exec and shell share, which fill req.
func execFlags(fs *flag.FlagSet, req *apiv1.ExecRequest) {
	fs.Func("uid", "run as user id `N` (default: the image's user)", uint32Flag(&req.UID))
	fs.Func("gid", "run as group id `N`, with --uid (default: that user's group in the image, else N as uid)", uint32Flag(&req.GID))
	fs.StringVar(&req.WorkingDir, "w", "", "working directory, an absolute path (default: the workload's)")
	req.Env = map[string]string{}
	fs.Var(keyValues(req.Env), "e", "set the environment variable `K=V` (repeat for more)")
	fs.StringVar(&req.Timeout, "timeout", "", "kill the command after `D`, a duration such as 30s or 10m (default: none)")
}

func uint32Flag(dst **uint32) func(string) error {
	return func(s string) error {
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return errors.New("must be a number from 0 to 4294967295")
		}
		v := uint32(n)
		*dst = &v
		return nil
	}
}

// parseExec parses the command line of exec or shell: the flags, ENV and
// the command, checked as the server will check it (2 on a usage error).
func parseExec(fs *flag.FlagSet, req *apiv1.ExecRequest, args []string, defaultCommand []string) (ref string, code int, ok bool) {
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return "", 2, false
	}
	if len(rest) == 0 || (len(rest) == 1 && defaultCommand == nil) {
		fs.Usage()
		return "", 2, false
	}
	req.Command = rest[1:]
	if len(req.Command) == 0 {
		req.Command = defaultCommand
	}
	if len(req.Env) == 0 {
		req.Env = nil
	}
	if errs := req.Validate(); len(errs) > 0 {
		for _, fe := range errs {
			fmt.Fprintf(fs.Output(), "isolationd %s: %s: %s\n", fs.Name(), fe.Field, fe.Message)
		}
		return "", 2, false
	}
	return rest[0], 0, true
}

// execTarget is the id of the environment ref names. A session token may
// exec into its environment but not read it: an id GET refuses with 403
// is used as it is, for the exec to be authorized on its own.
func execTarget(ctx context.Context, c *client.Client, ref string) (string, error) {
	e, err := resolveEnvironment(ctx, c, ref)
	switch {
	case client.StatusCode(err) == http.StatusForbidden && !strings.Contains(ref, "/"):
		return ref, nil
	case client.StatusCode(err) == http.StatusForbidden:
		return "", fmt.Errorf("%w; a token that may not read the environment (a session token) names it by its id", err)
	case err != nil:
		return "", err
	}
	return e.ID, nil
}

func envExec(ctx context.Context, c *client.Client, args []string, std stdio) int {
	fs := envFlags("exec", envExecUsage, std.err)
	var req apiv1.ExecRequest
	interactive := fs.Bool("i", false, "stream stdin to the command until its end (over a WebSocket); without -i the command's stdin is empty")
	execFlags(fs, &req)
	ref, code, ok := parseExec(fs, &req, args, nil)
	if !ok {
		return code
	}
	id, err := execTarget(ctx, c, ref)
	if err != nil {
		return execFailure(ctx, std.err, "exec", ref, err)
	}
	if !*interactive {
		exit, err := c.Exec(ctx, id, req, std.out, std.err)
		return execEnded(ctx, std.err, "exec", ref, exit, err)
	}
	sess, err := c.Attach(ctx, id, req, std.out, std.err)
	if err != nil {
		return execFailure(ctx, std.err, "exec", ref, err)
	}
	go func() {
		// The command may exit before stdin ends: then both fail, and
		// Wait has the exit.
		if _, err := io.Copy(sess, std.in); err == nil {
			_ = sess.CloseStdin()
		}
	}()
	exit, err := sess.Wait()
	return execEnded(ctx, std.err, "exec", ref, exit, err)
}

func envShell(ctx context.Context, c *client.Client, args []string, std stdio) int {
	fs := envFlags("shell", envShellUsage, std.err)
	var req apiv1.ExecRequest
	execFlags(fs, &req)
	ref, code, ok := parseExec(fs, &req, args, []string{defaultShell})
	if !ok {
		return code
	}
	tty, ok := std.in.(*os.File)
	if !ok || !term.IsTerminal(int(tty.Fd())) {
		fmt.Fprintln(std.err, "isolationd env shell: stdin is not a terminal; use isolationd env exec -i ENV -- CMD to stream it to a command")
		return 2
	}
	fd := int(tty.Fd())
	req.TTY = true
	req.Size = terminalSize(fd)
	if t := os.Getenv("TERM"); t != "" {
		if _, set := req.Env["TERM"]; !set {
			if req.Env == nil {
				req.Env = map[string]string{}
			}
			// The shell's terminal is ours: programs in it draw for it.
			req.Env["TERM"] = t
		}
	}
	id, err := execTarget(ctx, c, ref)
	if err != nil {
		return execFailure(ctx, std.err, "shell", ref, err)
	}
	sess, err := c.Attach(ctx, id, req, std.out, nil)
	if err != nil {
		return execFailure(ctx, std.err, "shell", ref, err)
	}
	exit, err := rawSession(fd, tty, sess)
	return execEnded(ctx, std.err, "shell", ref, exit, err)
}

// rawSession runs sess on the terminal fd: raw mode (every key goes to the
// remote terminal, ^C and ^D included), its size sent on every SIGWINCH,
// and the terminal as it was when the session ends, whatever ends it.
func rawSession(fd int, tty io.Reader, sess *client.ExecSession) (apiv1.ExecExit, error) {
	saved, err := term.MakeRaw(fd)
	if err != nil {
		sess.Close()
		return apiv1.ExecExit{}, fmt.Errorf("putting the terminal in raw mode: %w", err)
	}
	defer func() { _ = term.Restore(fd, saved) }()
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	defer signal.Stop(winch)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-winch:
				if size := terminalSize(fd); size != nil {
					// A session that has ended takes no resize: Wait says why.
					_ = sess.Resize(*size)
				}
			case <-done:
				return
			}
		}
	}()
	// This read of the terminal outlives the session until the next key
	// or the process's exit: a read cannot be interrupted.
	go func() { _, _ = io.Copy(sess, tty) }()
	return sess.Wait()
}

// terminalSize is the terminal's size within the API's limits; nil when
// it has none (a pty nobody sized), for the server's default.
func terminalSize(fd int) *apiv1.TerminalSize {
	cols, rows, err := term.GetSize(fd)
	if err != nil || rows <= 0 || cols <= 0 {
		return nil
	}
	return &apiv1.TerminalSize{Rows: uint16(min(rows, apiv1.MaxTerminalRows)), Cols: uint16(min(cols, apiv1.MaxTerminalCols))}
}

// execEnded is the exit code of a session that ended: the command's, with
// a word on stderr when the server ended it; or the failure's.
func execEnded(ctx context.Context, stderr io.Writer, name, ref string, exit apiv1.ExecExit, err error) int {
	if err != nil {
		return execFailure(ctx, stderr, name, ref, err)
	}
	if why := execEndReasons[exit.Reason]; why != "" {
		fmt.Fprintf(stderr, "isolationd env %s: %s: %s (exit code %d)\n", name, ref, why, exit.ExitCode)
	}
	return exit.ExitCode
}

// execEndReasons say why the server ended a command that did not exit by
// itself.
var execEndReasons = map[string]string{
	apiv1.ExecTimedOut:    "the command was killed: its --timeout passed",
	apiv1.ExecRevoked:     "the session ended: its token was revoked or expired",
	apiv1.ExecEnvGone:     "the session ended: the environment was deleted or its workload stopped",
	apiv1.ExecServerStops: "the session ended: isolationd is shutting down",
}

// execFailure reports err and is exec's exit code for it: 128+N when
// signal N interrupted the CLI (the command got SIGHUP), else 125.
func execFailure(ctx context.Context, stderr io.Writer, name, ref string, err error) int {
	if code, ok := interrupted(ctx); ok {
		fmt.Fprintf(stderr, "isolationd env %s: %s: %v: the session is closed (the command got SIGHUP)\n", name, ref, context.Cause(ctx))
		return code
	}
	fmt.Fprintf(stderr, "isolationd env %s: %s: %v\n", name, ref, err)
	return execFailed
}

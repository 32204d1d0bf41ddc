// Package devrun runs the whole product on this machine the way a user
// would: isolationd as its own process on an embedded store in a temporary
// directory, and the real Terraform CLI using the locally built provider
// through dev_overrides in a generated CLI configuration, leaving the
// user's own configuration untouched. `make demo` and `make bench` use it.
package devrun

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Binary names in a bin directory built by `make build`.
const (
	ServerBinary   = "isolationd"
	ProviderBinary = "terraform-provider-isolation"
)

// ProviderSource is the provider's address in configurations.
const ProviderSource = "isolationhq/isolation"

// Server is an isolationd process.
type Server struct {
	URL   string
	Token string

	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has exited
	err    error         // the process's exit status, set before exited closes
}

// StartServer starts `isolationd serve` from binary on a free loopback port
// with its data in dataDir, its output to logs, and a fresh random admin
// token, and returns once /readyz answers 200 (or fails when the process
// exits or readyTimeout passes first). serveArgs are more flags for
// `isolationd serve`, such as --driver netns.
func StartServer(ctx context.Context, binary, dataDir string, logs io.Writer, readyTimeout time.Duration, serveArgs ...string) (*Server, error) {
	return Start(ctx, Options{Binary: binary, DataDir: dataDir, Logs: logs, ReadyTimeout: readyTimeout, Args: serveArgs})
}

// Options are StartServer's settings, and the admin token: replicas on one
// store must bootstrap the same one, or each revokes the other's.
type Options struct {
	Binary, DataDir string
	Logs            io.Writer
	ReadyTimeout    time.Duration
	Args            []string // more flags for `isolationd serve`
	Token           string   // the bootstrap admin token; "" for a fresh random one
}

// Start is StartServer with every setting, the admin token included.
func Start(ctx context.Context, o Options) (*Server, error) {
	if _, err := os.Stat(o.Binary); err != nil {
		return nil, fmt.Errorf("isolationd binary: %w (run `make build` first)", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	token := o.Token
	if token == "" {
		if token, err = RandomToken(); err != nil {
			return nil, err
		}
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(o.Binary, append([]string{"serve", "--listen", addr, "--data-dir", o.DataDir}, o.Args...)...)
	cmd.Env = append(os.Environ(), "ISOLATIOND_BOOTSTRAP_TOKEN="+token)
	cmd.Stdout, cmd.Stderr = o.Logs, o.Logs
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting isolationd: %w", err)
	}
	s := &Server{URL: "http://" + addr, Token: token, cmd: cmd, exited: make(chan struct{})}
	go func() {
		s.err = cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitReady(ctx, o.ReadyTimeout); err != nil {
		_ = s.Stop(5 * time.Second)
		return nil, err
	}
	return s, nil
}

// waitReady polls /readyz until it answers 200. Polling is the only way to
// learn that another process is listening; the deadline bounds it and the
// process's exit ends it early.
func (s *Server) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	hc := &http.Client{Timeout: time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/readyz", nil)
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.exited:
			return fmt.Errorf("isolationd exited before it was ready: %v", s.err)
		case <-ctx.Done():
			return fmt.Errorf("isolationd was not ready at %s/readyz within %s", s.URL, timeout)
		case <-tick.C:
		}
	}
}

// Stop sends SIGTERM, which makes isolationd drain and stop cleanly, and
// waits for it to exit; after timeout it kills the process.
func (s *Server) Stop(timeout time.Duration) error {
	select {
	case <-s.exited:
		return s.exitError()
	default:
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("signalling isolationd: %w", err)
	}
	select {
	case <-s.exited:
		return s.exitError()
	case <-time.After(timeout):
		_ = s.cmd.Process.Kill()
		<-s.exited
		return fmt.Errorf("isolationd did not stop within %s of SIGTERM and was killed", timeout)
	}
}

// Kill kills isolationd with SIGKILL, as a crash would, and waits for it
// to exit; it fails unless the process died of that signal.
func (s *Server) Kill() error {
	if err := s.cmd.Process.Kill(); err != nil {
		return fmt.Errorf("killing isolationd: %w", err)
	}
	<-s.exited
	var exit *exec.ExitError
	if !errors.As(s.err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		return fmt.Errorf("isolationd was to die of SIGKILL: %v", s.err)
	}
	return nil
}

// Exited is closed once the process has exited.
func (s *Server) Exited() <-chan struct{} { return s.exited }

// Pid is isolationd's process id, for what /proc says of it (its memory).
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// CPUTime returns the CPU time (user and system) isolationd has used so
// far, from /proc (Linux).
func (s *Server) CPUTime() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("isolationd CPU time: %w", err)
	}
	// The command name, field 2, is in parentheses and may hold spaces;
	// utime and stime are fields 14 and 15, counted from there.
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("isolationd CPU time: unexpected /proc stat %q", b)
	}
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("isolationd CPU time: %w", err)
		}
		ticks += n
	}
	// Linux reports in USER_HZ, which is 100 on every architecture Go supports.
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

func (s *Server) exitError() error {
	if s.err != nil {
		return fmt.Errorf("isolationd exited: %w", s.err)
	}
	return nil
}

// freePort asks the kernel for a free loopback port. Another process could
// take it before isolationd binds it; isolationd then fails to start, and
// says so, rather than anything going silently wrong.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// RandomToken is a fresh admin token, for ISOLATIOND_BOOTSTRAP_TOKEN.
func RandomToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "demo-" + hex.EncodeToString(b), nil
}

// FindTerraform returns the CLI to use: explicit when set, else terraform
// on PATH, else tofu on PATH.
func FindTerraform(explicit string) (string, error) {
	if explicit != "" {
		p, err := exec.LookPath(explicit)
		if err != nil {
			return "", fmt.Errorf("terraform CLI %q: %w", explicit, err)
		}
		return filepath.Abs(p)
	}
	for _, name := range []string{"terraform", "tofu"} {
		if p, err := exec.LookPath(name); err == nil {
			return filepath.Abs(p)
		}
	}
	return "", errors.New("neither terraform nor tofu is on PATH: install one, or pass its path (make builds OpenTofu into bin/ when neither is there)")
}

// Override installs the provider of Source from the binary in Dir.
type Override struct{ Source, Dir string }

// WriteCLIConfig writes a Terraform CLI configuration into dir that takes
// the provider from providerDir (which holds terraform-provider-isolation),
// and those of extra from theirs, and everything else from the registry,
// and returns its path, for TF_CLI_CONFIG_FILE.
func WriteCLIConfig(dir, providerDir string, extra ...Override) (string, error) {
	if _, err := os.Stat(filepath.Join(providerDir, ProviderBinary)); err != nil {
		return "", fmt.Errorf("provider binary: %w (run `make build` first)", err)
	}
	var b strings.Builder
	b.WriteString("provider_installation {\n  dev_overrides {\n")
	for _, o := range append([]Override{{ProviderSource, providerDir}}, extra...) {
		abs, err := filepath.Abs(o.Dir)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "    %q = %q\n", o.Source, abs)
	}
	b.WriteString("  }\n  direct {}\n}\n")
	p := filepath.Join(dir, "terraform.rc")
	return p, os.WriteFile(p, []byte(b.String()), 0o600)
}

// Terraform runs one CLI in one working directory.
type Terraform struct {
	Path string
	Dir  string
	// Env is added to this process's environment for every command.
	Env []string
	// Stdout and Stderr receive the commands' output; nil discards it.
	Stdout, Stderr io.Writer
	// LastCPU is the CPU time (user and system) of the last command,
	// including the provider plugins it started and waited for.
	LastCPU time.Duration
}

// Env returns the variables that point Terraform at the provider build
// and at a server: the CLI configuration, endpoint and token, and no
// prompts or update checks.
func Env(cliConfig string, s *Server) []string {
	return EnvAt(cliConfig, s.URL, s.Token)
}

// EnvAt is Env for the API at endpoint, which may stand before several
// servers.
func EnvAt(cliConfig, endpoint, token string) []string {
	return []string{
		"TF_CLI_CONFIG_FILE=" + cliConfig,
		"ISOLATION_ENDPOINT=" + endpoint,
		"ISOLATION_TOKEN=" + token,
		"TF_IN_AUTOMATION=1",
		"TF_INPUT=0",
		"CHECKPOINT_DISABLE=1",
	}
}

// ExitError is a terraform command that exited non-zero.
type ExitError struct {
	Args []string
	Code int
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("terraform %s exited with status %d", strings.Join(e.Args, " "), e.Code)
}

// Run runs terraform with args; a non-zero exit is an *ExitError.
func (tf *Terraform) Run(ctx context.Context, args ...string) error {
	return tf.run(ctx, tf.Stdout, args)
}

// Output runs terraform with args and returns its standard output.
func (tf *Terraform) Output(ctx context.Context, args ...string) ([]byte, error) {
	var b strings.Builder
	err := tf.run(ctx, &b, args)
	return []byte(b.String()), err
}

func (tf *Terraform) run(ctx context.Context, stdout io.Writer, args []string) error {
	cmd := exec.CommandContext(ctx, tf.Path, args...)
	cmd.Dir = tf.Dir
	cmd.Env = append(os.Environ(), tf.Env...)
	cmd.Stdout, cmd.Stderr = stdout, tf.Stderr
	// SIGTERM first on cancellation, so terraform can release its state lock.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	err := cmd.Run()
	if cmd.ProcessState != nil {
		tf.LastCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return &ExitError{Args: args, Code: exit.ExitCode()}
	}
	if err != nil {
		return fmt.Errorf("running terraform %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// ExitCode is the exit status of err from Run: 0 for nil, the status of
// an *ExitError, and -1 for any other failure.
func ExitCode(err error) int {
	var e *ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &e):
		return e.Code
	default:
		return -1
	}
}

// CopyConfig copies the Terraform files (*.tf, *.tfvars) of src into dst,
// so that state and lock files land in dst and never in the repository.
func CopyConfig(src, dst string) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil { //nolint:gosec // G301: copies of the checkout's configuration, no secret: the checkout's modes
		return err
	}
	copied := 0
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !(strings.HasSuffix(name, ".tf") || strings.HasSuffix(name, ".tfvars")) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, name), b, 0o644); err != nil { //nolint:gosec // G306: as the directory above
			return err
		}
		copied++
	}
	if copied == 0 {
		return fmt.Errorf("%s holds no .tf files", src)
	}
	return nil
}

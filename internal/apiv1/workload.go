package apiv1

import (
	"bytes"
	"encoding/json"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Restart policies of a workload: what the environment's init does when
// the workload's command exits.
const (
	RestartAlways    = "always"     // restart it, whatever its exit code
	RestartOnFailure = "on-failure" // restart it when its exit code is not 0
	RestartNever     = "never"      // leave it exited; the environment stays up
)

// RestartPolicies lists the restart policies; the first is the default.
var RestartPolicies = []string{RestartAlways, RestartOnFailure, RestartNever}

// Workload states, as the runtime observes them.
const (
	WorkloadNotRun       = "not_run"       // recorded, not run: the simulate driver, or --runtime none
	WorkloadStarting     = "starting"      // image, container or command on its way up
	WorkloadRunning      = "running"       // the command (or the idle init) is running
	WorkloadExited       = "exited"        // the command exited and is not restarted
	WorkloadCrashLooping = "crash_looping" // the command keeps exiting soon after each restart
)

// WorkloadStates lists the workload states.
var WorkloadStates = []string{WorkloadNotRun, WorkloadStarting, WorkloadRunning, WorkloadExited, WorkloadCrashLooping}

// Runtime names, as Enforcement.Runtime reports them.
const (
	RuntimeRunc     = "runc"     // workloads in OCI containers under runc
	RuntimeNone     = "none"     // network-only environments: no workloads
	RuntimeSimulate = "simulate" // workload specs recorded, never run
)

// DefaultMaxProcesses is max_processes when a request leaves it out.
const DefaultMaxProcesses = 1024

// WorkloadSpec is what an environment runs: an image, and optionally the
// command that replaces the image's entrypoint and cmd. Without a command
// and without an entrypoint or cmd in the image, the environment's init
// runs alone and keeps the environment up for exec.
type WorkloadSpec struct {
	Image      string            `json:"image"`
	Command    []string          `json:"command,omitempty"`
	Args       []string          `json:"args,omitempty"`
	Env        map[string]string `json:"env,omitempty"`
	WorkingDir string            `json:"working_dir,omitempty"`
	Restart    string            `json:"restart,omitempty"`
	// Ports are the ports the workload listens on, by name, for policy
	// rules that name a port instead of giving its number.
	Ports []WorkloadPort `json:"ports,omitempty"`
}

// WorkloadPort is a named port of a workload, as a Kubernetes container
// port: a rule's port_name resolves to Port for the protocol given.
type WorkloadPort struct {
	Name     string `json:"name"`
	Port     int    `json:"port"`
	Protocol string `json:"protocol,omitempty"`
}

// Workload is an environment's workload as the API shows it: its spec and
// what the runtime observed. The observed fields change without the
// environment's generation changing.
type Workload struct {
	WorkloadSpec
	State        string     `json:"state"`
	ExitCode     *int       `json:"exit_code"`
	RestartCount int        `json:"restart_count"`
	StartedAt    *time.Time `json:"started_at"`
	ImageDigest  string     `json:"image_digest"`
}

// Nullable is a PATCH field that tells absent (keep the value), null
// (remove it) and a value apart. The zero Nullable is absent, and is left
// out of JSON with the omitzero option.
type Nullable[T any] struct {
	Set   bool // present in the body, as null or as a value
	Value *T   // nil for null
}

// Null is a Nullable that removes the field.
func Null[T any]() Nullable[T] { return Nullable[T]{Set: true} }

// Some is a Nullable that sets the field to v.
func Some[T any](v T) Nullable[T] { return Nullable[T]{Set: true, Value: &v} }

// IsZero reports an absent field, for omitzero.
func (n Nullable[T]) IsZero() bool { return !n.Set }

// ValueType is T's type, which the field has in JSON, for code that walks
// a body beside its Go type (the server's check of field names).
func (Nullable[T]) ValueType() reflect.Type { return reflect.TypeFor[T]() }

// MarshalJSON writes null or the value.
func (n Nullable[T]) MarshalJSON() ([]byte, error) {
	if n.Value == nil {
		return []byte("null"), nil
	}
	return json.Marshal(n.Value)
}

// UnmarshalJSON reads null or a value, refusing unknown fields as the
// rest of a request body does.
func (n *Nullable[T]) UnmarshalJSON(b []byte) error {
	n.Set = true
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		n.Value = nil
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var v T
	if err := dec.Decode(&v); err != nil {
		return err
	}
	n.Value = &v
	return nil
}

// Image is an image in the server's local image store.
type Image struct {
	Name      string    `json:"name"`       // as workloads name it: a local name or a registry reference
	Digest    string    `json:"digest"`     // the manifest's digest, sha256:...
	Size      int64     `json:"size"`       // bytes of its compressed layers
	Layers    int       `json:"layers"`     // number of layers
	Source    string    `json:"source"`     // "import", or the registry reference it was pulled from
	CreatedAt time.Time `json:"created_at"` // when it entered the store
	InUse     int       `json:"in_use"`     // environments whose workload uses it
}

// LogLine is one line of a workload's output, as GET
// /v1/environments/{id}/logs serves it in NDJSON.
type LogLine struct {
	Time   time.Time `json:"time"`
	Stream string    `json:"stream"` // stdout or stderr
	Line   string    `json:"line"`
}

// Limits on a workload spec.
const (
	MinMaxProcesses   = 16
	MaxMaxProcesses   = 65536
	MaxWorkloadArgs   = 256      // command and args entries together
	MaxWorkloadEnv    = 256      // env entries
	MaxWorkloadBytes  = 64 << 10 // command, args, env and working_dir together
	MaxImageRefLength = 255
	maxEnvNameLength  = 256
	MaxWorkloadPorts  = 64 // named ports
	msgRestart        = "must be one of always, on-failure, never"
	msgImageRef       = "must be an image reference: a local image name or [registry/]repository[:tag][@sha256:digest], lowercase, such as busybox, team/dev:1.4 or registry.example.com/team/dev:1.4"
	msgEnvName        = "must be an environment variable name: a letter or '_', then letters, digits or '_'"
	msgNUL            = "must not contain a NUL byte"
	msgWorkingDir     = "must be an absolute path"
)

// imageRefRE is the distribution reference grammar (the one Docker,
// containerd and go-containerregistry accept), with the lowercase
// repository it requires.
var (
	imageRefRE = regexp.MustCompile(`^` +
		// optional domain: a host with a dot or a port, or localhost
		`(?:((?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?)/)?` +
		// repository path components
		`([a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)` +
		// tag, digest
		`(?::([\w][\w.-]{0,127}))?(?:@(sha256:[a-f0-9]{64}))?$`)
	pathComponentRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	envNameRE       = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// ValidateImageRef checks that ref is an image reference a workload can
// name: a local image's name or a registry reference.
func ValidateImageRef(field, ref string) []FieldError {
	var e errs
	switch m := imageRefRE.FindStringSubmatch(ref); {
	case ref == "":
		e.add(field, msgRequired)
	case len(ref) > MaxImageRefLength:
		e.add(field, "must be at most %d characters", MaxImageRefLength)
	case m == nil:
		e.add(field, "%s", msgImageRef)
	case m[1] != "" && !strings.ContainsAny(m[1], ".:") && m[1] != "localhost" && !pathComponentRE.MatchString(m[1]):
		// a first component without a dot or a port is a repository
		// path component, not a host, so "Team/dev" is not a reference
		e.add(field, "%s", msgImageRef)
	}
	return e
}

// validateEnv checks environment variables (names, NUL bytes, their
// count) and returns their size in bytes, for the caller's total.
func validateEnv(field, per string, env map[string]string) (int, errs) {
	var e errs
	if len(env) > MaxWorkloadEnv {
		e.add(field, "%s", limitMessage("entries", per, "", MaxWorkloadEnv, len(env)))
	}
	size := 0
	for _, k := range slices.Sorted(maps.Keys(env)) {
		size += len(k) + len(env[k])
		f := mapKey(field, k)
		if len(k) > maxEnvNameLength || !envNameRE.MatchString(k) {
			e.add(f, msgEnvName)
		}
		if strings.IndexByte(env[k], 0) >= 0 {
			e.add(f, msgNUL)
		}
	}
	return size, e
}

// Validate checks a workload spec.
func (w WorkloadSpec) Validate(field string) []FieldError {
	var e errs
	e = append(e, ValidateImageRef(path(field, "image"), w.Image)...)
	if w.Restart != "" && !slices.Contains(RestartPolicies, w.Restart) {
		e.add(path(field, "restart"), msgRestart)
	}
	if n := len(w.Command) + len(w.Args); n > MaxWorkloadArgs {
		e.add(path(field, "command"), "%s", limitMessage("entries", "workload", "command and args together", MaxWorkloadArgs, n))
	}
	size := len(w.WorkingDir)
	for name, list := range map[string][]string{"command": w.Command, "args": w.Args} {
		for i, a := range list {
			size += len(a)
			if strings.IndexByte(a, 0) >= 0 {
				e.add(index(path(field, name), i), msgNUL)
			}
		}
	}
	if len(w.Command) > 0 && w.Command[0] == "" {
		e.add(index(path(field, "command"), 0), "must name the program to run")
	}
	envSize, envErrs := validateEnv(path(field, "env"), "workload", w.Env)
	size += envSize
	e = append(e, envErrs...)
	if w.WorkingDir != "" && !strings.HasPrefix(w.WorkingDir, "/") {
		e.add(path(field, "working_dir"), msgWorkingDir)
	}
	if size > MaxWorkloadBytes {
		e.add(field, "%s", limitMessage("bytes", "workload", "command, args, env and working_dir together", MaxWorkloadBytes, size))
	}
	return append(e, validateWorkloadPorts(path(field, "ports"), w.Ports)...)
}

// validateWorkloadPorts checks a workload's named ports as Kubernetes
// checks a container's: IANA_SVC_NAME names, unique, on a port 1-65535
// of tcp, udp or sctp.
func validateWorkloadPorts(field string, ports []WorkloadPort) []FieldError {
	var e errs
	if len(ports) > MaxWorkloadPorts {
		e.add(field, "%s", limitMessage("ports", "workload", "", MaxWorkloadPorts, len(ports)))
		return e
	}
	seen := map[string]bool{}
	for i, p := range ports {
		f := index(field, i)
		e = append(e, ValidatePortName(path(f, "name"), p.Name)...)
		if seen[p.Name] {
			e.add(path(f, "name"), "must be unique: %q names another port of the workload", p.Name)
		}
		seen[p.Name] = true
		if p.Port < MinPort || p.Port > MaxPort {
			e.add(path(f, "port"), "%s", msgPortRange)
		}
		switch p.Protocol {
		case "", ProtocolTCP, ProtocolUDP, ProtocolSCTP:
		default:
			e.add(path(f, "protocol"), "must be one of tcp, udp, sctp")
		}
	}
	return e
}

// NamedPort returns the port the workload declares under name for proto
// (tcp when empty), and whether it declares one.
func (w *WorkloadSpec) NamedPort(name, proto string) (int, bool) {
	if w == nil {
		return 0, false
	}
	proto = cmpOr(proto, ProtocolTCP)
	for _, p := range w.Ports {
		if p.Name == name && cmpOr(p.Protocol, ProtocolTCP) == proto {
			return p.Port, true
		}
	}
	return 0, false
}

// Normalize gives a workload spec the one form the server stores and
// answers with: the default restart policy, and no empty lists or maps.
func (w WorkloadSpec) Normalize() WorkloadSpec {
	w.Restart = cmpOr(w.Restart, RestartPolicies[0])
	if len(w.Command) == 0 {
		w.Command = nil
	}
	if len(w.Args) == 0 {
		w.Args = nil
	}
	if len(w.Env) == 0 {
		w.Env = nil
	}
	ports := w.Ports
	w.Ports = nil
	for _, p := range ports {
		p.Protocol = cmpOr(p.Protocol, ProtocolTCP)
		w.Ports = append(w.Ports, p)
	}
	return w
}

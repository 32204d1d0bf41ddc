package runc

import (
	"cmp"
	"maps"
	"slices"
	"strings"

	"github.com/isolationhq/terraform-provider-isolation/internal/workload"
)

// defaultPath is the PATH of a container whose image sets none, Docker's.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// resolveProcess works out what the init runs, from the workload and the
// image, with Docker's and Kubernetes' semantics: a command replaces the
// image's entrypoint and cmd; args alone replace the cmd. Its program
// must exist in the image; with no program at all the init runs alone.
func resolveProcess(root rootfs, spec workload.Spec) (process, error) {
	w, img := spec.Workload, spec.Image
	var args []string
	field := "workload.image" // the field a missing program is blamed on
	switch {
	case len(w.Command) > 0:
		args, field = append(slices.Clone(w.Command), w.Args...), "workload.command"
	case len(w.Args) > 0:
		args = append(slices.Clone(img.Entrypoint), w.Args...)
		if len(img.Entrypoint) == 0 {
			field = "workload.args"
		}
	default:
		args = append(slices.Clone(img.Entrypoint), img.Cmd...)
	}
	base := newProcessBase(spec)
	u, err := root.resolveUser(base.User)
	if err != nil {
		return process{}, err
	}
	return base.process(root, args, field, u)
}

// processBase is what every process of a container starts from, the
// workload's command and exec'd ones alike: the image's environment with
// the workload's on top, the working directory, the image's user and the
// hostname. A container's record keeps it, for Exec.
type processBase struct {
	Env      []string `json:"env"`
	Cwd      string   `json:"cwd"`
	User     string   `json:"user"`
	Hostname string   `json:"hostname"`
}

func newProcessBase(spec workload.Spec) processBase {
	w, img := spec.Workload, spec.Image
	return processBase{
		Env:      mergeEnv(img.Env, w.Env),
		Cwd:      cmp.Or(w.WorkingDir, img.WorkingDir, "/"),
		User:     img.User,
		Hostname: spec.Hostname,
	}
}

// process runs args as u: its environment gets PATH, HOSTNAME and u's
// HOME when it sets none, and args' program must exist in the image
// (field is blamed when it does not).
func (b processBase) process(root rootfs, args []string, field string, u user) (process, error) {
	env := withDefault(slices.Clip(b.Env), "PATH", defaultPath)
	env = withDefault(env, "HOSTNAME", b.Hostname)
	env = withDefault(env, "HOME", u.Home)
	p := process{
		Args:   args,
		Env:    env,
		Cwd:    b.Cwd,
		UID:    u.UID,
		GID:    u.GID,
		Groups: u.Groups,
		Field:  field,
	}
	if len(args) > 0 {
		if err := root.lookPath(args[0], p.Cwd, envValue(env, "PATH")); err != nil {
			return process{}, &workload.SpecError{Field: field, Message: err.Error()}
		}
	}
	return p, nil
}

// mergeEnv is the image's environment with the workload's on top: a
// variable of both keeps its place and takes the workload's value.
func mergeEnv(image []string, overrides map[string]string) []string {
	out := slices.Clone(image)
	for _, k := range slices.Sorted(maps.Keys(overrides)) {
		kv := k + "=" + overrides[k]
		if i := slices.IndexFunc(out, func(e string) bool { return strings.HasPrefix(e, k+"=") }); i >= 0 {
			out[i] = kv
		} else {
			out = append(out, kv)
		}
	}
	return out
}

func withDefault(env []string, key, value string) []string {
	if slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, key+"=") }) {
		return env
	}
	return append(env, key+"="+value)
}

func envValue(env []string, key string) string {
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, key+"="); ok {
			return v
		}
	}
	return ""
}

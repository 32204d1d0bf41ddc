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
	u, err := root.resolveUser(img.User)
	if err != nil {
		return process{}, err
	}
	env := mergeEnv(img.Env, w.Env)
	env = withDefault(env, "PATH", defaultPath)
	env = withDefault(env, "HOSTNAME", spec.Hostname)
	env = withDefault(env, "HOME", u.Home)
	p := process{
		Args:   args,
		Env:    env,
		Cwd:    cmp.Or(w.WorkingDir, img.WorkingDir, "/"),
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

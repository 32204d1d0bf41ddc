// Package version is isolationd's release, for `isolationd version`,
// /healthz and GET /v1/whoami.
package version

import "runtime/debug"

// Version is set at build time:
//
//	go build -ldflags "-X github.com/isolationhq/terraform-provider-isolation/internal/version.Version=1.2.3" ./cmd/isolationd
//
// Left empty, String falls back to what the Go toolchain recorded.
var Version = ""

// String is the version: the one set by -ldflags, else the module version
// of a `go install`ed binary, else "dev" with the commit it was built from
// when the toolchain recorded one.
func String() string {
	if Version != "" {
		return Version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	return fromBuildInfo(info)
}

// fromBuildInfo is String's fallback, apart so tests can feed it.
func fromBuildInfo(info *debug.BuildInfo) string {
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "-modified"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev == "" {
		return "dev"
	}
	return "dev-" + rev + modified
}

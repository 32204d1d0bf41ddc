// Package image is isolationd's local, content-addressed image store: OCI
// images imported from a layout or an archive, or pulled from a registry,
// with their digests verified, and their layers unpacked once into
// read-only directories that every environment's overlay root shares.
package image

import "errors"

// Resolved is an image ready to run: its unpacked layers and the parts of
// its config a runtime uses.
type Resolved struct {
	Name   string // as the workload names it
	Digest string // the manifest's digest, sha256:...
	// Layers are the unpacked layer directories, lowest first, for an
	// overlayfs lowerdir (reversed). They must not be written.
	Layers     []string
	Entrypoint []string
	Cmd        []string
	Env        []string // KEY=value
	WorkingDir string
	User       string // as the image config says it: "", "uid", "uid:gid", "name" or "name:group"
}

// ErrUnknown is returned by Resolve for a name that is neither a local
// image nor a reference to a registry: retrying cannot help.
var ErrUnknown = errors.New("unknown image")

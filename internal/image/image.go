// Package image is isolationd's local, content-addressed image store: OCI
// images imported from a layout or an archive, or pulled from a registry,
// with their digests verified, and their layers unpacked once into
// read-only directories that every environment's overlay root shares.
//
// It sits below the application layer: internal/control imports it (to
// import, list and delete images on the API's behalf) and the reconciler
// resolves workloads' images through it. It imports nothing of the server
// but the wire types of internal/apiv1.
//
// On disk, under the store's directory:
//
//	blobs/sha256/<hex>          manifests, configs and compressed layers, by digest
//	layers/<shift>/<diffid>/    each layer unpacked once, ids shifted by <shift>
//	refs/<sha256 of name>.json  one record per image name
//	tmp/                        work in progress, emptied at Open
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

// ErrInvalid wraps every refusal of an image's content: a digest that
// does not match, a layer that escapes its directory or holds a device
// node, an archive that is neither an OCI layout nor a docker archive.
// Importing the same bytes again cannot help.
var ErrInvalid = errors.New("invalid image")

// ErrTooLarge wraps the refusal of an archive or an image past the
// store's size bounds (Options).
var ErrTooLarge = errors.New("image too large")

// ErrNotFound is returned by Get and Delete for a name the store does not
// hold.
var ErrNotFound = errors.New("no such image")

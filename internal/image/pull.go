package image

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	gname "github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Pull fetches ref from its registry and stores it as name: for an
// index, the image for linux on this machine's architecture. Credentials
// come from the default keychain (~/.docker/config.json and its helpers),
// else the pull is anonymous. remote checks every blob against its
// digest as it streams in. An error wrapping ErrUnknown says the
// registry does not have the image or will not give it (retrying cannot
// help); any other error may pass.
func (s *Store) Pull(ctx context.Context, name, ref string, opts ...Option) (Image, error) {
	if err := checkName(name); err != nil {
		return Image{}, err
	}
	r, err := gname.ParseReference(ref)
	if err != nil {
		return Image{}, fmt.Errorf("%w: %q is not a reference: %v", ErrUnknown, ref, err)
	}
	desc, err := remote.Get(r,
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}),
		remote.WithUserAgent("isolationd"),
	)
	if err != nil {
		return Image{}, pullError(ref, err)
	}
	img, err := desc.Image()
	if err != nil {
		return Image{}, pullError(ref, err)
	}
	src := source{origin: ref}
	if src.manifest, err = img.RawManifest(); err != nil {
		return Image{}, pullError(ref, err)
	}
	if src.digest, err = img.Digest(); err != nil {
		return Image{}, pullError(ref, err)
	}
	if src.config, err = img.RawConfigFile(); err != nil {
		return Image{}, pullError(ref, err)
	}
	src.blob = func(_ context.Context, d v1.Descriptor) (blobReader, error) {
		l, err := img.LayerByDigest(d.Digest)
		if err != nil {
			return blobReader{}, pullError(ref, err)
		}
		rc, err := l.Compressed()
		if err != nil {
			return blobReader{}, pullError(ref, err)
		}
		return blobReader{ReadCloser: rc, verified: true}, nil
	}
	return s.ingest(ctx, name, src, options(opts))
}

// permanent are the registry's answers that another try would get again.
var permanent = []transport.ErrorCode{
	transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, transport.NameInvalidErrorCode,
	transport.UnauthorizedErrorCode, transport.DeniedErrorCode, transport.TagInvalidErrorCode,
}

// pullError tells a registry's refusal (ErrUnknown) from a failure that
// may pass (a registry that does not answer).
func pullError(ref string, err error) error {
	var te *transport.Error
	if errors.As(err, &te) {
		unknown := te.StatusCode == 404 || te.StatusCode == 401 || te.StatusCode == 403
		for _, d := range te.Errors {
			unknown = unknown || slices.Contains(permanent, d.Code)
		}
		if unknown {
			return fmt.Errorf("%w: %s: the registry answered: %v", ErrUnknown, ref, err)
		}
	}
	return fmt.Errorf("pulling %s: %w", ref, err)
}

// flight is a pull in progress, which other resolves of the same
// reference wait for instead of pulling it again.
type flight struct {
	done chan struct{}
	img  Image
	err  error
}

// Resolve finds the image a workload names: the local image of that name
// (a name imported locally shadows the registry reference it spells),
// else the reference pulled from its registry when it names one, once
// however many ask at the same time. Its layers are unpacked for the
// store's shift (again from the blobs, if their directory went missing).
// An error wrapping ErrUnknown says no image can be found under ref.
func (s *Store) Resolve(ctx context.Context, ref string, opts ...Option) (Resolved, error) {
	img, err := s.Get(ref)
	if errors.Is(err, ErrNotFound) {
		img, err = s.pullOnce(ctx, ref, opts)
	}
	if err != nil {
		return Resolved{}, err
	}
	layers, err := s.unpacked(ctx, img)
	if err != nil {
		return Resolved{}, err
	}
	return Resolved{
		Name: ref, Digest: img.Digest, Layers: layers,
		Entrypoint: img.Entrypoint, Cmd: img.Cmd, Env: img.Env, WorkingDir: img.WorkingDir, User: img.User,
	}, nil
}

func (s *Store) pullOnce(ctx context.Context, ref string, opts []Option) (Image, error) {
	if err := checkName(ref); err != nil {
		return Image{}, fmt.Errorf("%w: %v", ErrUnknown, err)
	}
	if !hasDomain(ref) {
		return Image{}, fmt.Errorf("%w: %q is not in the image store, and names no registry to pull it from: "+
			"import it (isolationd image import %s PATH) or name it with its registry (registry.example.com/%s)", ErrUnknown, ref, ref, ref)
	}
	s.mu.Lock()
	if img, ok := s.images[ref]; ok {
		s.mu.Unlock()
		return img, nil
	}
	if f, ok := s.pulls[ref]; ok {
		s.mu.Unlock()
		select {
		case <-f.done:
			return f.img, f.err
		case <-ctx.Done():
			return Image{}, ctx.Err()
		}
	}
	f := &flight{done: make(chan struct{})}
	s.pulls[ref] = f
	s.mu.Unlock()
	f.img, f.err = s.Pull(ctx, ref, ref, opts...)
	s.mu.Lock()
	delete(s.pulls, ref)
	s.mu.Unlock()
	close(f.done)
	return f.img, f.err
}

// hasDomain reports whether ref names a registry: its first component is
// a host (with a dot or a port) or localhost, as the reference grammar
// reads it.
func hasDomain(ref string) bool {
	first, _, ok := strings.Cut(ref, "/")
	return ok && (strings.ContainsAny(first, ".:") || first == "localhost")
}

// unpacked returns img's layer directories, lowest first, unpacking
// from the store's blobs those that are missing.
func (s *Store) unpacked(ctx context.Context, img Image) ([]string, error) {
	keys := []string{}
	for _, l := range img.Layers {
		keys = append(keys, l.Digest, layerKey(l.DiffID))
	}
	release := s.hold(keys...)
	defer release()
	b := &budget{left: s.opts.MaxImageBytes}
	dirs := make([]string, len(img.Layers))
	var placed []placement
	for i, l := range img.Layers {
		dirs[i] = s.layerPath(l.DiffID)
		if exists(dirs[i]) || slices.ContainsFunc(placed, func(p placement) bool { return p.layerTo == dirs[i] }) {
			continue
		}
		h, err := v1.NewHash(l.Digest)
		if err == nil {
			var p placement
			p, err = s.ensureLayer(ctx, notStaged, v1.Descriptor{Digest: h, Size: l.Size}, l.DiffID, b)
			placed = append(placed, p)
		}
		if err != nil {
			discard(placed)
			return nil, fmt.Errorf("image %s: %w", img.Name, err)
		}
	}
	if len(placed) == 0 {
		return dirs, nil
	}
	return dirs, s.place(placed)
}

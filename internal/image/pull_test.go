package image_test

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/isolationhq/terraform-provider-isolation/internal/image"
	"github.com/isolationhq/terraform-provider-isolation/internal/image/imagetest"
)

// testRegistry is go-containerregistry's registry on a loopback listener;
// manifests counts the manifest requests it answered.
type testRegistry struct {
	host      string
	manifests atomic.Int64
	// cut, while set, drops the connection halfway through every layer
	// (every blob past 64 KiB: not the config).
	cut atomic.Bool
}

func newRegistry(t *testing.T) *testRegistry {
	r := &testRegistry{}
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if strings.Contains(req.URL.Path, "/manifests/") && req.Method == http.MethodGet {
			r.manifests.Add(1)
		}
		if r.cut.Load() && strings.Contains(req.URL.Path, "/blobs/sha256:") && req.Method == http.MethodGet {
			w = &halfWriter{ResponseWriter: w}
		}
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

func (r *testRegistry) push(t *testing.T, repo string, img v1.Image) string {
	t.Helper()
	ref := r.host + "/" + repo
	if err := remote.Write(must[name.Reference](t)(name.ParseReference(ref)), img); err != nil {
		t.Fatal(err)
	}
	return ref
}

func TestResolve_PullsAReferenceToARegistryOnce(t *testing.T) {
	reg := newRegistry(t)
	img := appImage(t, "pulled")
	ref := reg.push(t, "team/dev:1.4", img)
	s, _ := openStore(t, image.Options{})

	const n = 5
	var wg sync.WaitGroup
	results := make([]image.Resolved, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = s.Resolve(context.Background(), ref)
		}()
	}
	wg.Wait()
	digest := must[v1.Hash](t)(img.Digest()).String()
	for i := range n {
		if errs[i] != nil || results[i].Digest != digest || len(results[i].Layers) != 2 {
			t.Fatalf("resolve %d: %+v %v, want digest %s", i, results[i], errs[i], digest)
		}
	}
	if got := reg.manifests.Load(); got != 1 {
		t.Errorf("%d concurrent resolves asked the registry for the manifest %d times, want once", n, got)
	}
	rec := must[image.Image](t)(s.Get(ref))
	if rec.Source != ref || rec.Digest != digest {
		t.Errorf("record %+v", rec)
	}
	must[image.Resolved](t)(s.Resolve(context.Background(), ref))
	if got := reg.manifests.Load(); got != 1 {
		t.Errorf("resolving the pulled image again asked the registry (%d manifest requests)", got)
	}
}

func TestResolve_ALocalImageShadowsTheRegistry(t *testing.T) {
	reg := newRegistry(t)
	ref := reg.push(t, "team/dev:1.4", appImage(t, "registry"))
	s, _ := openStore(t, image.Options{})
	local := must[image.Image](t)(importFile(t, s, ref, imagetest.WriteOCITar(t, appImage(t, "local"))))
	res := must[image.Resolved](t)(s.Resolve(context.Background(), ref))
	if res.Digest != local.Digest || reg.manifests.Load() != 0 {
		t.Errorf("resolved %s after %d manifest requests, want the local %s and none", res.Digest, reg.manifests.Load(), local.Digest)
	}
}

func TestResolve_WhatTheRegistryDoesNotHaveIsUnknown(t *testing.T) {
	reg := newRegistry(t)
	s, _ := openStore(t, image.Options{})
	_, err := s.Resolve(context.Background(), reg.host+"/team/missing:1")
	if !errors.Is(err, image.ErrUnknown) || !strings.Contains(err.Error(), "team/missing:1") {
		t.Fatalf("resolving what the registry lacks: %v, want ErrUnknown naming it", err)
	}
}

func TestResolve_AnUnreachableRegistryIsNotUnknown(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	host := strings.TrimPrefix(srv.URL, "http://")
	srv.Close() // nothing listens there any more
	s, _ := openStore(t, image.Options{})
	_, err := s.Resolve(context.Background(), host+"/team/dev:1")
	if err == nil || errors.Is(err, image.ErrUnknown) {
		t.Fatalf("resolving from a registry that does not answer: %v, want an error that may pass", err)
	}
}

// halfWriter writes the first half of a blob, then drops the connection.
type halfWriter struct {
	http.ResponseWriter
	size, sent int64
}

func (h *halfWriter) WriteHeader(code int) {
	h.size, _ = strconv.ParseInt(h.Header().Get("Content-Length"), 10, 64)
	h.ResponseWriter.WriteHeader(code)
}

func (h *halfWriter) Write(p []byte) (int, error) {
	if h.size > 64<<10 && h.sent+int64(len(p)) > h.size/2 {
		p = p[:max(h.size/2-h.sent, 0)]
		_, _ = h.ResponseWriter.Write(p)
		h.ResponseWriter.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	h.sent += int64(len(p))
	return h.ResponseWriter.Write(p)
}

func TestResolve_ARegistryThatDropsTheConnectionIsWorthAnotherTry(t *testing.T) {
	reg := newRegistry(t)
	ref := reg.push(t, "team/dev:1", appImage(t, "x"))
	s, dir := openStore(t, image.Options{})
	reg.cut.Store(true)
	_, err := s.Resolve(context.Background(), ref)
	if err == nil || errors.Is(err, image.ErrUnknown) || errors.Is(err, image.ErrInvalid) || !strings.Contains(err.Error(), "sha256:") {
		t.Fatalf("resolving while the registry drops connections: %v, want an error naming the layer, neither unknown nor invalid", err)
	}
	assertEmpty(t, s, dir)
	reg.cut.Store(false)
	must[image.Resolved](t)(s.Resolve(context.Background(), ref))
}

package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// fuzzTar is a tar of the given headers (regular files get a few bytes).
func fuzzTar(hdrs ...*tar.Header) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		if h.Typeflag == tar.TypeReg {
			h.Size = 3
		}
		h.ModTime = time.Unix(0, 0)
		_ = tw.WriteHeader(h)
		if h.Typeflag == tar.TypeReg {
			_, _ = tw.Write([]byte("abc"))
		}
	}
	_ = tw.Close()
	return buf.Bytes()
}

// A layer's tar, whatever it holds, puts nothing outside the layer's
// directory, and is refused with ErrInvalid or ErrTooLarge when it does
// not unpack.
func FuzzUnpackLayer(f *testing.F) {
	f.Add(fuzzTar(&tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}, &tar.Header{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644}))
	f.Add(fuzzTar(&tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "../outside"}, &tar.Header{Name: "link/x", Typeflag: tar.TypeReg}))
	f.Add(fuzzTar(&tar.Header{Name: "up", Typeflag: tar.TypeSymlink, Linkname: ".."}, &tar.Header{Name: "up/outside/x", Typeflag: tar.TypeReg}))
	f.Add(fuzzTar(&tar.Header{Name: "a", Typeflag: tar.TypeReg}, &tar.Header{Name: "b", Typeflag: tar.TypeLink, Linkname: "../outside/x"}))
	f.Add(fuzzTar(&tar.Header{Name: "d/", Typeflag: tar.TypeDir}, &tar.Header{Name: "d/.wh..wh..opq", Typeflag: tar.TypeReg}, &tar.Header{Name: "d/.wh.x", Typeflag: tar.TypeReg}, &tar.Header{Name: "d/.wh...", Typeflag: tar.TypeReg}))
	f.Add(fuzzTar(&tar.Header{Name: "d", Typeflag: tar.TypeReg}, &tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o500}, &tar.Header{Name: "d/e", Typeflag: tar.TypeReg}, &tar.Header{Name: "d", Typeflag: tar.TypeSymlink, Linkname: "/"}))
	f.Add([]byte("not a tar"))
	f.Fuzz(func(t *testing.T, layer []byte) {
		base := t.TempDir()
		root, outside := filepath.Join(base, "layer"), filepath.Join(base, "outside")
		for _, d := range []string{root, outside} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		u := newUnpacker(root, 0, 0, os.Geteuid() == 0, &budget{left: 1 << 20})
		err := u.unpack(bytes.NewReader(layer))
		var pathErr *os.PathError
		if err != nil && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrTooLarge) && !errors.As(err, &pathErr) && !errors.As(err, new(*os.LinkError)) {
			t.Fatalf("unpack: %v (%T), want ErrInvalid, ErrTooLarge or a file system error", err, err)
		}
		ents, _ := os.ReadDir(base)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		if !slices.Equal(names, []string{"layer", "outside"}) {
			t.Fatalf("beside the layer: %v", names)
		}
		if in, _ := os.ReadDir(outside); len(in) != 0 {
			t.Fatalf("the layer wrote outside itself: %v", in)
		}
		_ = removeAll(base)
	})
}

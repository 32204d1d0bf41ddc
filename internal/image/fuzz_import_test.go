package image_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/image"
	"github.com/isolationhq/terraform-provider-isolation/internal/image/imagetest"
)

// An archive, whatever it holds, is imported or refused with ErrInvalid
// or ErrTooLarge, and leaves nothing in the store's tmp/ either way.
func FuzzImportArchive(f *testing.F) {
	small := imagetest.Scratch(f, imagetest.Options{Files: []imagetest.File{{Path: "etc/motd", Data: []byte("hi")}}, Cmd: []string{"/bin/true"}})
	for _, p := range []string{imagetest.WriteOCITar(f, small), imagetest.WriteDockerTar(f, small)} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("not a tar"))
	dir := filepath.Join(f.TempDir(), "images")
	s, err := image.Open(dir, image.Options{MaxArchiveBytes: 1 << 20, MaxImageBytes: 4 << 20})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, archive []byte) {
		_, err := s.Import(context.Background(), "fuzz", bytes.NewReader(archive))
		if err != nil && !errors.Is(err, image.ErrInvalid) && !errors.Is(err, image.ErrTooLarge) {
			t.Fatalf("import: %v, want ErrInvalid or ErrTooLarge", err)
		}
		if left, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(left) != 0 {
			t.Fatalf("tmp/ holds %d entries after the import", len(left))
		}
		if beside, _ := os.ReadDir(filepath.Dir(dir)); len(beside) != 1 {
			t.Fatalf("the import wrote beside the store: %d entries", len(beside))
		}
	})
}

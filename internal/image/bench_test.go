package image_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/isolationhq/terraform-provider-isolation/internal/image"
	"github.com/isolationhq/terraform-provider-isolation/internal/image/imagetest"
)

// benchImage is a ~50 MB image of incompressible files in four layers:
// in each, 20 files of 600 KiB and 200 of 2 KiB.
func benchImage(b *testing.B) v1.Image {
	rng := rand.New(rand.NewChaCha8([32]byte{'i', 's', 'o'}))
	var layers [][]imagetest.File
	for l := range 4 {
		dir := fmt.Sprintf("data%d", l)
		files := []imagetest.File{imagetest.Dir(dir, 0)}
		for i := range 220 {
			size := 2 << 10
			if i < 20 {
				size = 600 << 10
			}
			data := make([]byte, size)
			for j := 0; j+8 <= len(data); j += 8 {
				v := rng.Uint64()
				for k := range 8 {
					data[j+k] = byte(v >> (8 * k))
				}
			}
			files = append(files, imagetest.File{Path: fmt.Sprintf("%s/f%03d", dir, i), Data: data})
		}
		layers = append(layers, files)
	}
	return imagetest.Scratch(b, imagetest.Options{Layers: layers})
}

// BenchmarkImport imports a ~50 MB OCI tar into an empty store (digests
// checked, blobs kept, layers unpacked) and, in the same run, extracts
// the same layer blobs with `tar -x`: ns/op is the import alone; the
// metrics give both times and their ratio (the target is at most 2).
func BenchmarkImport(b *testing.B) {
	tarBin, err := exec.LookPath("tar")
	if err != nil {
		b.Skip("no tar on PATH for the baseline")
	}
	img := benchImage(b)
	archive := imagetest.WriteOCITar(b, img)
	layout := imagetest.WriteLayout(b, img)
	layers, err := img.Layers()
	if err != nil {
		b.Fatal(err)
	}
	var blobs []string
	var size int64
	for _, l := range layers {
		d, _ := l.Digest()
		n, _ := l.Size()
		size += n
		blobs = append(blobs, filepath.Join(layout, "blobs", d.Algorithm, d.Hex))
	}
	work := b.TempDir()
	settle := func() { _ = exec.Command("sync").Run() } // the last round's writeback is not the next one's cost
	var importTime, tarTime time.Duration
	b.SetBytes(size)
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		storeDir := filepath.Join(work, fmt.Sprintf("store-%d", i))
		s, err := image.Open(storeDir, image.Options{})
		if err != nil {
			b.Fatal(err)
		}
		f, err := os.Open(archive)
		if err != nil {
			b.Fatal(err)
		}
		settle()
		b.StartTimer()
		start := time.Now()
		if _, err := s.Import(context.Background(), "bench", f); err != nil {
			b.Fatal(err)
		}
		importTime += time.Since(start)
		b.StopTimer()
		f.Close()

		out := filepath.Join(work, fmt.Sprintf("tar-%d", i))
		settle()
		start = time.Now()
		for j, blob := range blobs {
			dst := filepath.Join(out, fmt.Sprint(j))
			if err := os.MkdirAll(dst, 0o755); err != nil {
				b.Fatal(err)
			}
			if msg, err := exec.Command(tarBin, "-xf", blob, "-C", dst).CombinedOutput(); err != nil {
				b.Fatalf("tar -x: %v: %s", err, msg)
			}
		}
		tarTime += time.Since(start)
		for _, d := range []string{storeDir, out} {
			if err := os.RemoveAll(d); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(importTime.Milliseconds())/n, "import-ms")
	b.ReportMetric(float64(tarTime.Milliseconds())/n, "tar-x-ms")
	b.ReportMetric(float64(importTime)/float64(tarTime), "import/tar-x")
}

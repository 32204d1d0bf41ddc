package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/image"
)

const imageUsage = `usage:
  isolationd image import NAME PATH
      store an image under NAME (what workloads give as workload.image): PATH is an OCI image
      layout directory, or a tar of one, or a docker archive (as docker save writes it)
  isolationd image list
      list the server's images
  isolationd image rm NAME
      delete an image (refused while an environment's workload uses it)
The server is ` + envEndpoint + `, with the token ` + envToken + ` (an admin's to import and delete).`

// imageCommand runs `isolationd image ...`; it ends on SIGINT or SIGTERM.
func imageCommand(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return imageContext(ctx, args, stdout, stderr)
}

func imageContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var run func(*client.Client) error
	switch {
	case len(args) == 3 && args[0] == "import":
		run = func(c *client.Client) error { return imageImport(ctx, c, args[1], args[2], stdout) }
	case len(args) == 1 && (args[0] == "list" || args[0] == "ls"):
		run = func(c *client.Client) error { return imageList(ctx, c, stdout) }
	case len(args) == 2 && args[0] == "rm":
		run = func(c *client.Client) error {
			if err := c.Images().Delete(ctx, args[1], ""); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "deleted %s\n", args[1])
			return nil
		}
	default:
		fmt.Fprintln(stderr, imageUsage)
		return 2
	}
	c, err := apiClient()
	if err != nil {
		fmt.Fprintf(stderr, "isolationd image %s: %v\n", args[0], err)
		return 2
	}
	if err := run(c); err != nil {
		fmt.Fprintf(stderr, "isolationd image %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// imageImport sends the archive at path, or a layout directory tarred as
// it is sent (nothing is written to disk).
func imageImport(ctx context.Context, c *client.Client, name, path string, stdout io.Writer) error {
	st, err := os.Stat(path) //nolint:gosec // G703: the operator names the file to send
	if err != nil {
		return err
	}
	var body io.Reader
	if st.IsDir() {
		if _, err := os.Stat(filepath.Join(path, "index.json")); err != nil { //nolint:gosec // G703: as above
			return fmt.Errorf("%s is a directory but not an OCI image layout (it has no index.json)", path)
		}
		pr, pw := io.Pipe()
		defer pr.Close()
		go func() { pw.CloseWithError(image.WriteLayoutTar(pw, path)) }()
		body = pr
	} else {
		f, err := os.Open(path) //nolint:gosec // G703: as above
		if err != nil {
			return err
		}
		defer f.Close()
		body = f
	}
	img, err := c.Images().Import(ctx, name, body)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "imported %s: %s, %d layers, %s\n", img.Name, img.Digest, img.Layers, mebibytes(img.Size))
	return nil
}

func imageList(ctx context.Context, c *client.Client, stdout io.Writer) error {
	imgs, err := c.Images().List(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tDIGEST\tLAYERS\tSIZE\tIN USE\tSOURCE\tCREATED")
	for _, img := range imgs {
		digest := img.Digest
		if len(digest) > len("sha256:")+12 {
			digest = digest[:len("sha256:")+12]
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\t%s\n", img.Name, digest, img.Layers, mebibytes(img.Size), img.InUse, img.Source, img.CreatedAt.Local().Format(time.DateTime))
	}
	return tw.Flush()
}

func mebibytes(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

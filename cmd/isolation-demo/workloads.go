package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/image/imagebuild"
)

// imageName is the name the demo imports its image under, and gives the
// quickstart as var.image.
const imageName = "quickstart/busybox:1"

// indexPage is what api's httpd serves from the image's /www.
const indexPage = "<h1>api</h1>\n<p>Served by busybox httpd in the quickstart's api environment.</p>\n"

// The memory-limit demonstration: an environment whose command allocates
// past its memory limit, a second after it starts (a command that fails
// at once fails its environment instead).
const (
	hogName     = "memory-hog"
	hogMemoryMB = 64
)

var hogCommand = fmt.Sprintf("echo allocating 200 MiB with a %d MiB limit; sleep 1; exec dd if=/dev/zero of=/dev/null bs=200M count=1", hogMemoryMB)

// oomTimeout bounds the wait for the OOM kill to be reported: a second of
// sleep, the allocation, and the init's report.
const oomTimeout = time.Minute

// importImage builds the quickstart's image locally, Debian's busybox
// with a page for api's httpd, and imports it over the API.
func (d *demo) importImage(ctx context.Context) error {
	d.section("Building the workloads' image from Debian's busybox-static and importing it")
	img, err := imagebuild.Busybox(imagebuild.Options{Files: []imagebuild.File{
		imagebuild.Dir("www", 0),
		{Path: "www/index.html", Data: []byte(indexPage)},
	}})
	if err != nil {
		return err
	}
	path := filepath.Join(d.dir, "quickstart-image.tar")
	if err := imagebuild.WriteOCITar(path, img); err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	got, err := d.api.Images().Import(ctx, imageName, f)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "built %s (an OCI image layout, with go-containerregistry) from %s\n", filepath.Base(path), imagebuild.BusyboxPath)
	fmt.Fprintf(d.out, "POST /v1/images?name=%s -> %s, %d layers, %d bytes\n", got.Name, got.Digest, got.Layers, got.Size)
	return nil
}

// removeImage deletes the image once no environment uses it.
func (d *demo) removeImage(ctx context.Context) error {
	if err := d.api.Images().Delete(ctx, imageName, ""); err != nil {
		return err
	}
	left, err := d.api.Images().List(ctx)
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("after DELETE /v1/images/%s the server still has %d images", imageName, len(left))
	}
	fmt.Fprintf(d.out, "DELETE /v1/images/%s: the server has no images left\n", imageName)
	return nil
}

// showWorkloads prints what the API reports of api's and db's workloads,
// and fails when one is not as the driver promises: running with runc,
// recorded and not run with the simulate driver.
func (d *demo) showWorkloads(ctx context.Context, outs quickstartOutputs) error {
	d.section("The workloads, from the API")
	want := apiv1.WorkloadRunning
	if d.netnsPrefix == "" {
		want = apiv1.WorkloadNotRun
	}
	for _, name := range []string{"api", "db"} {
		env, err := d.api.Environments().Get(ctx, outs.Environments[name].ID)
		if err != nil {
			return err
		}
		w := env.Workload
		if w == nil {
			return fmt.Errorf("environment %s has no workload", name)
		}
		fmt.Fprintf(d.out, "%-3s %s (runtime %s): %s\n", name, w.State, env.Enforcement.Runtime, shellJoin(append(slices.Clone(w.Command), w.Args...)))
		if w.ImageDigest != "" {
			fmt.Fprintf(d.out, "    image %s@%s, started %s, restarts %d\n", w.Image, w.ImageDigest, formatTime(w.StartedAt), w.RestartCount)
		}
		if w.State != want {
			return fmt.Errorf("environment %s's workload is %s, want %s: %s", name, w.State, want, env.StateMessage)
		}
	}
	if d.netnsPrefix == "" {
		fmt.Fprintln(d.out, "\nthe simulate driver records the workloads and runs nothing (not_run)")
	}
	return nil
}

// shellJoin spells a command as a shell would take it, quoting the
// arguments that need it.
func shellJoin(args []string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = a
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$&;|<>*?()[]{}`~#!") {
			quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(quoted, " ")
}

func formatTime(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return t.Format(time.RFC3339)
}

// showLogs prints the last lines of an environment's workload output,
// from GET /v1/environments/{id}/logs, once n lines holding expect have
// come: the workload writes its output as it runs, so the demo follows it
// rather than guessing when it is there.
func (d *demo) showLogs(ctx context.Context, name, id, expect string, n int) error {
	const timeout = 10 * time.Second
	fctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var lines []apiv1.LogLine
	found := 0
	err := d.api.Environments().Logs(fctx, id, client.LogOptions{Follow: true}, func(l apiv1.LogLine) error {
		lines = append(lines, l)
		if strings.Contains(l.Line, expect) {
			if found++; found == n {
				cancel()
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if found < n {
		return fmt.Errorf("environment %s's output has %d lines with %q within %s, want %d; it has %d lines", name, found, expect, timeout, n, len(lines))
	}
	shown := lines[max(0, len(lines)-5):]
	fmt.Fprintf(d.out, "$ isolationd env logs %s   (GET /v1/environments/%s/logs; the last %d of %d lines)\n", name, id, len(shown), len(lines))
	for _, l := range shown {
		fmt.Fprintf(d.out, "  %s %-6s %s\n", l.Time.Format("15:04:05.000"), l.Stream, l.Line)
	}
	return nil
}

// memoryLimit creates an environment over the API whose workload
// allocates past its memory limit, waits until the API reports the OOM
// kill, prints it with the workload's output, and deletes it.
func (d *demo) memoryLimit(ctx context.Context, projectID string) error {
	d.section(fmt.Sprintf("A process past its memory limit: %s, with memory_mb = %d", hogName, hogMemoryMB))
	mem := int64(hogMemoryMB)
	spec := apiv1.WorkloadSpec{Image: imageName, Command: []string{"sh", "-c", hogCommand}}
	e, err := d.api.Environments().Create(ctx, apiv1.EnvironmentCreate{
		ProjectID: projectID, Name: hogName, Description: "allocates past its memory limit, a second after it starts",
		Resources: &apiv1.ResourcesSpec{MemoryMB: &mem}, Workload: &spec,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "POST /v1/environments %s: workload %s\n", hogName, shellJoin(spec.Command))
	start := time.Now()
	got, err := d.watchUntil(ctx, e.ID, "the OOM kill reported", oomTimeout, func(e apiv1.Environment) bool {
		w := e.Workload
		return w != nil && w.ExitCode != nil && *w.ExitCode == 137 && w.RestartCount >= 1 && strings.Contains(e.StateMessage, "OOM")
	})
	if err != nil {
		return err
	}
	w := got.Workload
	fmt.Fprintf(d.out, "GET /v1/environments/%s/watch: the kill reported %s after the create\n", e.ID, roundDuration(time.Since(start)))
	fmt.Fprintf(d.out, "  state %s; workload %s, exit_code %d, restart_count %d\n  state_message: %s\n\n",
		got.State, w.State, *w.ExitCode, w.RestartCount, strings.ReplaceAll(strings.TrimSpace(got.StateMessage), "\n", "\n    "))
	// Each run of the command printed its line before it was killed.
	if err := d.showLogs(ctx, hogName, e.ID, "allocating", w.RestartCount+1); err != nil {
		return err
	}
	if err := d.api.Environments().Delete(ctx, e.ID, ""); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := d.api.Environments().WaitDeleted(wctx, e.ID); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "\nDELETE /v1/environments/%s: %s is gone, its container with it\n", e.ID, hogName)
	return nil
}

// watchUntil follows an environment through the API's event stream
// until cond holds, and returns it then; it fails after timeout, saying
// what it last saw.
func (d *demo) watchUntil(ctx context.Context, id, what string, timeout time.Duration, cond func(apiv1.Environment) bool) (apiv1.Environment, error) {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last apiv1.Environment
	found := false
	err := d.api.Environments().Watch(wctx, id, func(e apiv1.Environment) error {
		last = e
		if cond(e) {
			found = true
			cancel()
		}
		return nil
	})
	switch {
	case found:
		return last, nil
	case err == nil:
		err = wctx.Err()
	}
	seen := "nothing"
	if last.Workload != nil {
		w := last.Workload
		seen = fmt.Sprintf("state %s, workload %s, exit_code %v, restart_count %d, state_message %q", last.State, w.State, deref(w.ExitCode), w.RestartCount, last.StateMessage)
	}
	return last, fmt.Errorf("environment %s: not %s within %s (%v); last seen: %s", id, what, timeout, err, seen)
}

func deref(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

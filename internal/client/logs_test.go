package client_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload/logs"
)

// logRoot finds every environment's output in a directory of its own,
// named by its id, as a runtime would.
type logRoot string

func (root logRoot) LogDir(envID string) (string, error) {
	return filepath.Join(string(root), envID), nil
}

func TestEnvironmentsLogs_ReadsTheTailAndFollows(t *testing.T) {
	root := t.TempDir()
	srv := startServer(t, server.Config{WorkloadLogs: logRoot(root)})
	c := adminClient(t, srv)
	ctx := t.Context()
	p, err := c.Projects().Create(ctx, apiv1.ProjectCreate{Name: "logs"})
	if err != nil {
		t.Fatal(err)
	}
	env, err := c.Environments().Create(ctx, apiv1.EnvironmentCreate{ProjectID: p.ID, Name: "app"})
	if err != nil {
		t.Fatal(err)
	}
	w, err := logs.NewWriter(filepath.Join(root, env.ID), logs.DefaultMaxBytes)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	fmt.Fprintln(w.Stream(logs.Stdout), "one")
	fmt.Fprintln(w.Stream(logs.Stderr), "two")

	var got []apiv1.LogLine
	tail := 1
	if err := c.Environments().Logs(ctx, env.ID, client.LogOptions{Tail: &tail}, func(l apiv1.LogLine) error {
		got = append(got, l)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Line != "two" || got[0].Stream != logs.Stderr || got[0].Time.IsZero() {
		t.Fatalf("lines %+v; want the last, two on stderr", got)
	}

	followCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	lines := make(chan string)
	done := make(chan error, 1)
	go func() {
		done <- c.Environments().Logs(followCtx, env.ID, client.LogOptions{Follow: true}, func(l apiv1.LogLine) error {
			lines <- l.Line
			return nil
		})
	}()
	for _, want := range []string{"one", "two", "three"} {
		if want == "three" {
			fmt.Fprintln(w.Stream(logs.Stdout), "three")
		}
		select {
		case l := <-lines:
			if l != want {
				t.Fatalf("line %q; want %q", l, want)
			}
		case err := <-done:
			t.Fatalf("Logs returned %v while following", err)
		case <-time.After(20 * time.Second):
			t.Fatalf("no line %q within 20s", want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Logs after its context ended: %v; want nil", err)
	}
}

func TestEnvironmentsLogs_UnknownEnvironmentIsNotFound(t *testing.T) {
	srv := startServer(t, server.Config{WorkloadLogs: logRoot(t.TempDir())})
	err := adminClient(t, srv).Environments().Logs(t.Context(), "env_nope", client.LogOptions{}, func(apiv1.LogLine) error { return nil })
	if !client.IsNotFound(err) {
		t.Fatalf("err %v; want a 404", err)
	}
	var e *client.Error
	if !errors.As(err, &e) || e.RequestID == "" {
		t.Errorf("err %v; want a *client.Error with the request id", err)
	}
}

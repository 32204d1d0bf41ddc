package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
)

// newWatched starts a server with an environment to watch.
func newWatched(t *testing.T) (*client.Client, *apiv1.Environment) {
	t.Helper()
	c := adminClient(t, startServer(t, server.Config{}))
	p, err := c.Projects().Create(t.Context(), apiv1.ProjectCreate{Name: "watch"})
	if err != nil {
		t.Fatal(err)
	}
	env, err := c.Environments().Create(t.Context(), apiv1.EnvironmentCreate{ProjectID: p.ID, Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	return c, env
}

func TestEnvironmentsWatch_SeesEveryChangeThenTheDeletion(t *testing.T) {
	t.Parallel()
	c, env := newWatched(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	seen := make(chan apiv1.Environment)
	done := make(chan error, 1)
	go func() {
		done <- c.Environments().Watch(ctx, env.ID, func(e apiv1.Environment) error {
			seen <- e
			return nil
		})
	}()
	// next is the first environment the watch reports for which ok holds.
	next := func(what string, ok func(apiv1.Environment) bool) apiv1.Environment {
		t.Helper()
		for {
			select {
			case e := <-seen:
				if ok(e) {
					return e
				}
			case err := <-done:
				t.Fatalf("Watch returned %v before the environment was %s", err, what)
			case <-ctx.Done():
				t.Fatalf("the watch did not report the environment %s", what)
			}
		}
	}
	ready := next("ready", func(e apiv1.Environment) bool { return e.State == apiv1.StateReady })
	labels := map[string]string{"seen": "yes"}
	if _, err := c.Environments().Update(ctx, env.ID, apiv1.EnvironmentPatch{Labels: &labels}, ""); err != nil {
		t.Fatal(err)
	}
	next("relabelled", func(e apiv1.Environment) bool { return e.Labels["seen"] == "yes" && e.Generation > ready.Generation })
	if err := c.Environments().Delete(ctx, env.ID, ""); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case <-seen:
		case err := <-done:
			if !client.IsNotFound(err) {
				t.Fatalf("Watch of a deleted environment returned %v, want a 404", err)
			}
			if err := c.Environments().Watch(ctx, env.ID, func(apiv1.Environment) error { return nil }); !client.IsNotFound(err) {
				t.Fatalf("Watch of an environment that is gone returned %v, want a 404", err)
			}
			return
		case <-ctx.Done():
			t.Fatal("the watch did not end with the environment's deletion")
		}
	}
}

func TestEnvironmentsWatch_EndsWithNoErrorWhenTheCallerStops(t *testing.T) {
	t.Parallel()
	c, env := newWatched(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	watchCtx, stop := context.WithCancel(ctx)
	var got apiv1.Environment
	err := c.Environments().Watch(watchCtx, env.ID, func(e apiv1.Environment) error {
		got = e
		stop()
		return nil
	})
	if err != nil || got.ID != env.ID {
		t.Fatalf("Watch = %v, having seen %+v; want nil after the environment", err, got)
	}
}

package provider

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/terraform-plugin-framework/diag"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
)

// providerClient is what Configure hands every resource and data source:
// the API client, who its token is (GET /v1/whoami, asked once per run),
// and which projects the token has been seen to see or not. A 404 means
// "gone" only when the token could have seen the object, and these two
// are what tells.
type providerClient struct {
	*client.Client
	identity apiv1.WhoAmI
	projects projectCache
}

func newProviderClient(c *client.Client, identity apiv1.WhoAmI) *providerClient {
	return &providerClient{Client: c, identity: identity, projects: projectCache{checks: map[string]*projectCheck{}}}
}

// clientFromProviderData is the Configure step every resource and data
// source shares. A nil result with no error means the provider is not
// configured yet (its settings are unknown until apply).
func clientFromProviderData(data any, diags *diag.Diagnostics) *providerClient {
	if data == nil {
		return nil
	}
	c, ok := data.(*providerClient)
	if !ok {
		diags.AddError("Unable to configure the isolation client",
			fmt.Sprintf("Expected *providerClient, got %T. This is a bug in the provider; please report it.", data))
		return nil
	}
	return c
}

// requireClient reports an error when an operation must call the API but
// the provider could not be configured because a setting was unknown.
func requireClient(c *providerClient, diags *diag.Diagnostics) bool {
	if c != nil {
		return true
	}
	diags.AddError("Unable to call the isolation API",
		"The isolation provider's settings (endpoint, token, ...) are still unknown, so it cannot call the API. "+
			"This happens when they come from a resource that is not created yet: apply that resource first "+
			"(for example with -target), then apply again.")
	return false
}

// errOutOfScope is confirmGone's and projectVisible's answer when the
// token cannot see the project: its message names the token's scope and
// the project, and never the secret.
type errOutOfScope struct {
	identity  apiv1.WhoAmI
	projectID string // "" for an object of the organization, or of no known project
}

func (e *errOutOfScope) Error() string {
	what := "project " + e.projectID
	if e.projectID == "" {
		// An organization's object (an admin token), or one whose project
		// the state does not record (just imported).
		what = "objects outside that project, such as the organization's"
	}
	return fmt.Sprintf("the provider's token %s (%q, role %s) sees %s, not %s",
		e.identity.TokenID, e.identity.Name, e.identity.Role, scopeOf(e.identity), what)
}

// scopeOf says in words which projects a token sees.
func scopeOf(who apiv1.WhoAmI) string {
	if who.ProjectID == "" {
		return "every project"
	}
	return "only project " + who.ProjectID
}

// orgWide reports whether the token sees every project (admin, auditor).
func (c *providerClient) orgWide() bool { return c.identity.ProjectID == "" }

// confirmGone is asked when a Read got 404 for an object of project
// projectID ("" for an object of the organization, such as an admin
// token). It answers nil when the 404 means the object is gone: the token
// sees the project, or sees every project and the project itself is gone.
// Otherwise it answers why the 404 proves nothing (an *errOutOfScope, or
// the failure of the project check), and the object must stay in state.
func (c *providerClient) confirmGone(ctx context.Context, projectID string) error {
	if projectID == "" {
		if c.orgWide() {
			return nil
		}
		return &errOutOfScope{identity: c.identity}
	}
	err := c.projectVisible(ctx, projectID)
	var scope *errOutOfScope
	if errors.As(err, &scope) && c.orgWide() {
		// The token sees every project, so the project was deleted, and
		// everything in it with it.
		return nil
	}
	return err
}

// projectVisible is nil when the token sees project id, an *errOutOfScope
// when the server answers 404 for it (it does not exist, or lies outside
// the token's scope: the server does not say which), or the error of the
// GET. One GET per project per run, shared by concurrent callers.
func (c *providerClient) projectVisible(ctx context.Context, id string) error {
	err := c.projects.check(ctx, id, func(ctx context.Context) error {
		_, err := c.Projects().Get(ctx, id)
		return err
	})
	if client.IsNotFound(err) {
		return &errOutOfScope{identity: c.identity, projectID: id}
	}
	return err
}

// projectCache remembers, per project, the answer to the one GET that
// checks the token sees it. Only answers about the project (200, 404) are
// kept; a timeout or a 5xx lets the next caller ask again.
type projectCache struct {
	mu     sync.Mutex
	checks map[string]*projectCheck
}

// projectCheck is one project's GET; done is closed once err is set.
type projectCheck struct {
	done chan struct{}
	err  error
}

func (pc *projectCache) check(ctx context.Context, id string, get func(context.Context) error) error {
	pc.mu.Lock()
	if c, ok := pc.checks[id]; ok {
		pc.mu.Unlock()
		select {
		case <-c.done:
			return c.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	c := &projectCheck{done: make(chan struct{})}
	pc.checks[id] = c
	pc.mu.Unlock()

	c.err = get(ctx)
	if c.err != nil && !client.IsNotFound(c.err) {
		pc.mu.Lock()
		delete(pc.checks, id)
		pc.mu.Unlock()
	}
	close(c.done)
	return c.err
}

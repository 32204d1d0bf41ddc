package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce"
	"github.com/isolationhq/terraform-provider-isolation/internal/logbuf"
)

// unrestorableDriver refuses one environment the way the netns driver
// refuses an address outside a changed pool: in Sync, and in every
// Provision after it.
type unrestorableDriver struct {
	*flakyDriver
	broken string
}

var errOutsidePool = errors.New("netns: address 198.18.0.2 is outside the address pool 198.18.4.0/24")

func (d *unrestorableDriver) Sync(ctx context.Context, keep map[string]string) error {
	rest := maps.Clone(keep)
	delete(rest, d.broken)
	return errors.Join(d.flakyDriver.Sync(ctx, rest), &enforce.EnvironmentError{EnvID: d.broken, Err: errOutsidePool})
}

func (d *unrestorableDriver) Provision(ctx context.Context, id, addr string) (enforce.Endpoint, error) {
	if id == d.broken {
		return enforce.Endpoint{}, errOutsidePool
	}
	return d.flakyDriver.Provision(ctx, id, addr)
}

// A driver that cannot restore one environment at start does not stop the
// reconciler: the failure is logged with the environment's id, the other
// environments are enforced again, new ones are provisioned, and the
// broken one reports itself not enforced with the driver's reason.
func TestStart_DriverSyncFailureIsLoggedAndTheBrokenEnvironmentReportsItself(t *testing.T) {
	f := newFixture(t, nil)
	broken := f.createEnvironment("broken", "req_1")
	healthy := f.createEnvironment("healthy", "req_2")
	f.waitFor(broken.ID, "enforced", isEnforced)
	f.waitFor(healthy.ID, "enforced", isEnforced)
	if err := f.rec.Stop(f.ctx); err != nil {
		t.Fatal(err)
	}

	var logs logbuf.Buffer
	f.use(New(Options{
		Store: f.store, Control: f.ctl, Driver: &unrestorableDriver{flakyDriver: f.driver, broken: broken.ID},
		Logger: slog.New(slog.NewJSONHandler(&logs, nil)), RetryBase: time.Millisecond, RetryMax: 20 * time.Millisecond,
	}))
	if err := f.rec.Start(f.ctx); err != nil {
		t.Fatalf("Start refused to serve because one environment could not be restored: %v", err)
	} // the fixture's cleanup stops f.rec, this one now

	got := f.waitFor(broken.ID, "reported not enforced", func(e *apiv1.Environment) bool {
		return e != nil && !e.Enforcement.Enforced && e.Enforcement.Message != ""
	})
	if got.State != apiv1.StateReady || !strings.Contains(got.Enforcement.Message, errOutsidePool.Error()) {
		t.Fatalf("broken environment: state %s, enforcement %+v; want ready, not enforced, with the driver's reason", got.State, got.Enforcement)
	}
	f.waitFor(healthy.ID, "enforced after the restart", isEnforced)
	later := f.createEnvironment("later", "req_3")
	f.waitFor(later.ID, "enforced", isEnforced)

	line := ""
	for l := range strings.SplitSeq(logs.String(), "\n") {
		if strings.Contains(l, "driver sync failed") {
			line = l
		}
	}
	if !strings.Contains(line, fmt.Sprintf(`"environment_ids":[%q]`, broken.ID)) || !strings.Contains(line, errOutsidePool.Error()) {
		t.Fatalf("the sync failure was not logged with the environment's id and the reason; log line: %q\nall logs:\n%s", line, logs.String())
	}
}

func TestFailedEnvironments_FindsEveryEnvironmentErrorInJoinedAndWrappedErrors(t *testing.T) {
	err := errors.Join(
		&enforce.EnvironmentError{EnvID: "a", Err: errOutsidePool},
		fmt.Errorf("router: %w", errors.Join(errors.New("busy"), &enforce.EnvironmentError{EnvID: "b", Err: errOutsidePool})),
		errors.New("unrelated"),
	)
	if got := strings.Join(enforce.FailedEnvironments(err), ","); got != "a,b" {
		t.Fatalf("FailedEnvironments = %q, want a,b", got)
	}
	if got := enforce.FailedEnvironments(nil); got != nil {
		t.Fatalf("FailedEnvironments(nil) = %v", got)
	}
}

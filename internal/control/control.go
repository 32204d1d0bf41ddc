// Package control is isolationd's application layer: every change to
// the server's state is one method here, whoever asks for it (an API
// request, the reconciler, the server at start). Each method runs one
// store transaction, builds its audit event through Event, works out
// which environments the change touches (bumping their enforcement
// generation) and asks for them to be reconciled, and returns a typed
// result. The rest of the server learns that it happened from the
// store's commit announcement (store.Commit), never from here.
//
// It knows nothing of HTTP: its errors are *problem.Error, and the API
// turns them into answers. Ids, the actors and the clock live here.
package control

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jonboulle/clockwork"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/ipam"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// NewID returns a time-sortable id with a type prefix ("env_", "evt_"...).
func NewID(prefix string) string {
	return prefix + uuid.Must(uuid.NewV7()).String()
}

// ServerActor is who the audit trail names for changes the server makes
// itself (the reconciler's transitions, the bootstrap token).
var ServerActor = apiv1.Actor{Name: "isolationd"}

// Options configure a Service.
type Options struct {
	Store store.Store
	// Clock is the one clock of everything that depends on time; nil
	// means the real one. Tests pass a fake one and move it.
	Clock clockwork.Clock
	// Driver is the enforcement driver's name, recorded on new
	// environments.
	Driver string
	// Runtime is the workload runtime's name (apiv1.Runtime*), recorded
	// on new environments; with apiv1.RuntimeNone, workloads are refused.
	Runtime string
	// DefaultEnvironmentQuota is the environment quota of a project
	// created without one; 0 means no limit.
	DefaultEnvironmentQuota int64
	// IPAM allocates environment addresses (the reconciler's
	// transitions need it).
	IPAM *ipam.Allocator
}

// Service is the application layer.
type Service struct {
	store   store.Store
	clock   clockwork.Clock
	driver  string
	runtime string
	quota   int64
	ipam    *ipam.Allocator
}

// New returns the application layer over opts.Store.
func New(opts Options) *Service {
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
	}
	return &Service{store: opts.Store, clock: opts.Clock, driver: opts.Driver, runtime: opts.Runtime, quota: opts.DefaultEnvironmentQuota, ipam: opts.IPAM}
}

// Clock is the service's clock, for the parts of the server that keep
// time on its behalf (rate limits, deadlines).
func (s *Service) Clock() clockwork.Clock { return s.clock }

// Call is who asks for a change, and what the caller needs of it beyond
// the change itself.
type Call struct {
	RequestID string
	Actor     apiv1.Actor
	Source    apiv1.Source
	// IfMatch is the caller's precondition on the object it changes: ""
	// for none, "*" for any existing object, else a list of ETags.
	IfMatch string
	// Status is what the caller answers a success with, recorded in the
	// audit event; 0 for the changes the server makes itself.
	Status int
	// Within, when set, runs last in the change's transaction with the
	// method's result: the API stores an idempotent request's answer
	// there, so the change and its replay commit together or not at all.
	Within func(ctx context.Context, tx store.Tx, result any) error
}

// Event starts the audit event of a change or a refusal that c asks for:
// the one constructor of every audit event.
func (s *Service) Event(c Call, action string, res apiv1.ResourceRef, projectID, outcome string) apiv1.AuditEvent {
	actor := c.Actor
	if actor == (apiv1.Actor{}) {
		actor = apiv1.Actor{Name: "anonymous"}
	}
	return apiv1.AuditEvent{
		ID:         NewID("evt_"),
		Time:       s.clock.Now().UTC(),
		RequestID:  c.RequestID,
		Actor:      actor,
		Source:     c.Source,
		ProjectID:  projectID,
		Action:     action,
		Resource:   res,
		Outcome:    outcome,
		StatusCode: c.Status,
	}
}

// change is what one mutation did, as its function reports it to mutate.
type change[T any] struct {
	result    T
	action    string
	resource  apiv1.ResourceRef
	projectID string
	before    any
	after     any
	// reconcile lists the environments the change asks to reconcile.
	reconcile []string
}

// mutate runs fn in one transaction with the change's audit event, its
// request to reconcile and c.Within; fn's error rolls everything back.
func mutate[T any](ctx context.Context, s *Service, c Call, fn func(tx store.Tx) (change[T], error)) (T, error) {
	var out T
	err := s.store.Update(ctx, func(tx store.Tx) error {
		ch, err := fn(tx)
		if err != nil {
			return err
		}
		out = ch.result
		ev := s.Event(c, ch.action, ch.resource, ch.projectID, apiv1.OutcomeSuccess)
		ev.Changes = &apiv1.Changes{Before: ch.before, After: ch.after}
		if _, err := tx.AppendAudit(ctx, ev); err != nil {
			return err
		}
		if len(ch.reconcile) > 0 {
			tx.Reconcile(c.RequestID, ch.reconcile...)
		}
		if c.Within != nil {
			return c.Within(ctx, tx, ch.result)
		}
		return nil
	})
	return out, err
}

// now is the time of a change, as every stored object records it.
func (s *Service) now() time.Time { return s.clock.Now().UTC() }

// checkIfMatch refuses a change when If-Match is present and names no
// current ETag of the object ("*" matches any existing object).
func checkIfMatch(ifMatch string, generation int64) error {
	if ifMatch == "" {
		return nil
	}
	cur := apiv1.ETag(generation)
	for part := range strings.SplitSeq(ifMatch, ",") {
		if p := strings.TrimSpace(part); p == "*" || p == cur {
			return nil
		}
	}
	return problem.New(problem.Precondition, "If-Match %s does not match the current ETag %s: the object was changed since you read it; read it again and retry", ifMatch, cur)
}

// writable is the check every patch and delete makes of the object it
// loaded inside its transaction: loadErr not found names the missing
// object, and an If-Match naming another generation is refused.
func writable(c Call, loadErr error, kind, id string, generation int64) error {
	if loadErr != nil {
		return notFoundOr(loadErr, kind, id)
	}
	return checkIfMatch(c.IfMatch, generation)
}

// notFoundOr names the missing object.
func notFoundOr(err error, kind, id string) error {
	if errors.Is(err, store.ErrNotFound) {
		return problem.NoSuch(kind, id)
	}
	return err
}

// nextGeneration is what every change of an object's spec sets: the
// generation after gen, its ETag, and the time of the change.
func nextGeneration(gen int64, now time.Time) (int64, string, time.Time) {
	return gen + 1, apiv1.ETag(gen + 1), now
}

// setIfPresent applies a field of a patch that is present.
func setIfPresent[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

func ref(kind, id string) apiv1.ResourceRef { return apiv1.ResourceRef{Type: kind, ID: id} }

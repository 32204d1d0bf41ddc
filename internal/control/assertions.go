package control

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/policy"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// Assertions are a project's policy tests. Every write that changes what
// is allowed calls keepAssertions inside its transaction, after its own
// writes and before it commits: the world it reads is the candidate
// state, and a refusal rolls the write back, so nothing races it.

// CreateAssertion creates an assertion of project projectID. One that
// does not hold now is refused with its first failing packet: a test
// that fails from the start tests nothing.
func (s *Service) CreateAssertion(ctx context.Context, c Call, projectID string, in apiv1.AssertionCreate) (apiv1.Assertion, error) {
	now := s.now()
	a := apiv1.Assertion{
		ID: NewID("ast_"), ProjectID: projectID, AssertionSpec: in.AssertionSpec.Normalize(),
		Generation: 1, CreatedAt: now, UpdatedAt: now, ETag: apiv1.ETag(1),
	}
	return mutate(ctx, s, c, func(tx store.Tx) (change[apiv1.Assertion], error) {
		if err := projectExists(ctx, tx, projectID); err != nil {
			return change[apiv1.Assertion]{}, err
		}
		if err := tx.CreateAssertion(ctx, a); err != nil {
			return change[apiv1.Assertion]{}, nameConflict(ctx, tx, err, "assertion", projectID, a.Name)
		}
		w, err := loadWorld(ctx, tx, []apiv1.Assertion{a})
		if err != nil {
			return change[apiv1.Assertion]{}, err
		}
		ev := policy.NewEvaluator(w)
		if p, failing := ev.Failing(a); failing {
			return change[apiv1.Assertion]{}, problem.New(problem.AssertionBroken,
				"assertion %q does not hold now: it expects %s of %s; create it once the rules it tests are in place (in Terraform, depends_on the policies)",
				a.Name, a.Expect, describe(ev, p, projectID))
		}
		return change[apiv1.Assertion]{
			result: a, action: "assertion.create", resource: ref("assertion", a.ID), projectID: projectID, after: a,
		}, nil
	})
}

// DeleteAssertion deletes assertion id of project projectID; one of
// another project is not found, as if it did not exist.
func (s *Service) DeleteAssertion(ctx context.Context, c Call, projectID, id string) (apiv1.Assertion, error) {
	return mutate(ctx, s, c, func(tx store.Tx) (change[apiv1.Assertion], error) {
		cur, err := GetAssertion(ctx, tx, projectID, id)
		if err := writable(c, err, "assertion", id, cur.Generation); err != nil {
			return change[apiv1.Assertion]{}, err
		}
		if err := tx.DeleteAssertion(ctx, id); err != nil {
			return change[apiv1.Assertion]{}, err
		}
		return change[apiv1.Assertion]{
			result: cur, action: "assertion.delete", resource: ref("assertion", id), projectID: projectID, before: cur,
		}, nil
	})
}

// GetAssertion reads assertion id of project projectID: store.ErrNotFound
// when it belongs to another.
func GetAssertion(ctx context.Context, r store.Reader, projectID, id string) (apiv1.Assertion, error) {
	a, err := r.GetAssertion(ctx, id)
	if err == nil && a.ProjectID != projectID {
		err = store.ErrNotFound
	}
	return a, err
}

func verdict(allowed bool) string {
	if allowed {
		return "allowed"
	}
	return "denied"
}

// guard is what keepAssertions needs of a write: the projects it
// affects, besides those of the environments whose rules it changes
// (changed), and undo, which turns the world as the write's transaction
// sees it back into the world before the write. rulesOnly says the write
// changes rules only, not which environments exist or carry what labels
// (a policy write): then only packets from or to changed can change.
type guard struct {
	projects  []string
	changed   []string
	rulesOnly bool
	// policies, for a policy write, are its versions before and after
	// (nil when absent): an assertion on a port neither may allow is
	// answered as before.
	policies []*apiv1.Policy
	undo     func(*policy.World)
}

// mayChange reports whether the write g guards may answer a's packets
// differently.
func (g guard) mayChange(a apiv1.Assertion) bool {
	if len(g.policies) == 0 {
		return true
	}
	return slices.ContainsFunc(g.policies, func(p *apiv1.Policy) bool {
		return p != nil && policy.MayAllow(*p, cmp.Or(a.Protocol, apiv1.ProtocolTCP), a.Port)
	})
}

// keepAssertions refuses the write in tx when it breaks an assertion of
// the projects it affects, or one that reaches other projects through a
// project_selector.
func keepAssertions(ctx context.Context, tx store.Tx, g guard) error {
	if g.rulesOnly && len(g.changed) == 0 {
		return nil
	}
	all, err := listAll(func(cursor string) ([]apiv1.Assertion, string, error) {
		return tx.ListAssertions(ctx, store.ListQuery{Limit: store.MaxLimit, Cursor: cursor})
	})
	if err != nil || len(all) == 0 {
		return err
	}
	affected := map[string]bool{}
	for _, p := range g.projects {
		affected[p] = true
	}
	// A policy changes the rules of its own project's environments only.
	if !g.rulesOnly {
		for _, id := range g.changed {
			e, err := tx.GetEnvironment(ctx, id)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			affected[e.ProjectID] = true
		}
	}
	asserts := slices.DeleteFunc(all, func(a apiv1.Assertion) bool {
		return (!affected[a.ProjectID] && a.To.ProjectSelector == nil) || !g.mayChange(a)
	})
	if len(asserts) == 0 {
		return nil
	}
	var only map[string]bool
	if g.rulesOnly {
		only = map[string]bool{}
		for _, id := range g.changed {
			only[id] = true
		}
	}
	w, err := loadWorld(ctx, tx, asserts)
	if err != nil {
		return err
	}
	prior := policy.World{Projects: maps.Clone(w.Projects), Environments: slices.Clone(w.Environments), Policies: slices.Clone(w.Policies)}
	g.undo(&prior)
	after, before := policy.NewEvaluator(w), policy.NewEvaluator(prior)
	for _, a := range asserts {
		p, broken := policy.Broken(a, before, after, only)
		switch {
		case !broken:
		case len(g.projects) > 0 && a.ProjectID != g.projects[0]:
			// The writer may not see that project: say no more than
			// that there is an assertion there.
			return problem.New(problem.AssertionBroken,
				"this change breaks an assertion of another project, about traffic to this project's environments; nothing was changed (that project's owners can say which)")
		default:
			return problem.New(problem.AssertionBroken,
				"this change breaks assertion %q (%s) of project %s: it expects %s of %s; nothing was changed",
				a.Name, a.ID, a.ProjectID, a.Expect, describe(after, p, a.ProjectID))
		}
	}
	return nil
}

// describe says what the rules of ev answer for packet p, with each
// side's reason; a destination in a project other than home is not
// named, nor are the reasons (they hold addresses), as the caller may
// not see that project.
func describe(ev *policy.Evaluator, p policy.Packet, home string) string {
	if p.ToProjectID != "" && p.ToProjectID != home {
		return p.Redacted() + ", which would be " + verdict(p.Allowed)
	}
	return fmt.Sprintf("%s, which would be %s (%s)", p, verdict(p.Allowed), ev.Explain(p))
}

// loadWorld reads what asserts need: every project's labels, and the
// environments and policies of the projects their packets may cross
// (theirs, those their targets' project selectors pick, and those the
// project_selector peers of those projects' policies pick).
func loadWorld(ctx context.Context, r store.Reader, asserts []apiv1.Assertion) (policy.World, error) {
	projects, err := AllProjectLabels(ctx, r)
	if err != nil {
		return policy.World{}, err
	}
	w := policy.World{Projects: projects}
	withPolicies := map[string]bool{}
	for _, a := range asserts {
		withPolicies[a.ProjectID] = true
		if a.To.ProjectSelector != nil {
			for id, labels := range projects {
				if policy.Selects(*a.To.ProjectSelector, labels) {
					withPolicies[id] = true
				}
			}
		}
	}
	withEnvs := maps.Clone(withPolicies)
	for _, id := range slices.Sorted(maps.Keys(withPolicies)) {
		pols, err := ProjectPolicies(ctx, r, id)
		if err != nil {
			return policy.World{}, err
		}
		w.Policies = append(w.Policies, pols...)
		for _, p := range pols {
			for _, peer := range policy.SelectorPeers(p) {
				if peer.ProjectSelector == nil {
					continue
				}
				for pid, labels := range projects {
					if policy.Selects(*peer.ProjectSelector, labels) {
						withEnvs[pid] = true
					}
				}
			}
		}
	}
	for _, id := range slices.Sorted(maps.Keys(withEnvs)) {
		envs, err := Environments(ctx, r, id, nil)
		if err != nil {
			return policy.World{}, err
		}
		w.Environments = append(w.Environments, envs...)
	}
	return w, nil
}

// The undo functions of keepAssertions, one per kind of write.

func undoPolicy(before, after *apiv1.Policy) func(*policy.World) {
	return func(w *policy.World) {
		if after != nil {
			w.Policies = slices.DeleteFunc(w.Policies, func(p apiv1.Policy) bool { return p.ID == after.ID })
		}
		if before != nil {
			w.Policies = append(w.Policies, *before)
		}
	}
}

func undoEnvironment(before, after *apiv1.Environment) func(*policy.World) {
	return func(w *policy.World) {
		if after != nil {
			w.Environments = slices.DeleteFunc(w.Environments, func(e apiv1.Environment) bool { return e.ID == after.ID })
		}
		if before != nil {
			w.Environments = append(w.Environments, *before)
		}
	}
}

func undoProjectLabels(before apiv1.Project) func(*policy.World) {
	return func(w *policy.World) { w.Projects[before.ID] = before.Labels }
}

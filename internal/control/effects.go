package control

import (
	"context"
	"errors"
	"maps"
	"slices"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/policy"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// What a change means for other environments, computed from the store. The
// API calls these inside the transaction that makes the change, so the
// enforcement generations it bumps commit with it; the reconciler then
// applies. The policy package decides; these functions only fetch what it
// needs, listing environments by label so a large project is not read
// whole when a selector picks a few.

// ProjectPolicies returns every policy of a project.
func ProjectPolicies(ctx context.Context, r store.Reader, projectID string) ([]apiv1.Policy, error) {
	return listAll(func(cursor string) ([]apiv1.Policy, string, error) {
		return r.ListPolicies(ctx, store.ListQuery{ProjectID: projectID, Limit: store.MaxLimit, Cursor: cursor})
	})
}

// Environments returns the environments of a project that carry labels.
func Environments(ctx context.Context, r store.Reader, projectID string, labels map[string]string) ([]apiv1.Environment, error) {
	return listAll(func(cursor string) ([]apiv1.Environment, string, error) {
		return r.ListEnvironments(ctx, store.ListQuery{ProjectID: projectID, Labels: labels, Limit: store.MaxLimit, Cursor: cursor})
	})
}

func listAll[T any](page func(cursor string) ([]T, string, error)) ([]T, error) {
	var all []T
	cursor := ""
	for {
		items, next, err := page(cursor)
		if err != nil {
			return nil, err
		}
		all = append(all, items...)
		if next == "" {
			return all, nil
		}
		cursor = next
	}
}

// AllProjectLabels returns every project's labels, by project id, for
// resolving project_selector peers.
func AllProjectLabels(ctx context.Context, r store.Reader) (map[string]map[string]string, error) {
	projects, err := listAll(func(cursor string) ([]apiv1.Project, string, error) {
		return r.ListProjects(ctx, store.ListQuery{Limit: store.MaxLimit, Cursor: cursor})
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]map[string]string, len(projects))
	for _, p := range projects {
		out[p.ID] = p.Labels
	}
	return out, nil
}

// crossProjectPolicies returns the policies of every project but skip
// that have project_selector peers: the only ones that see other
// projects' environments.
func crossProjectPolicies(ctx context.Context, r store.Reader, skip string) ([]apiv1.Policy, error) {
	all, err := ProjectPolicies(ctx, r, "")
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(p apiv1.Policy) bool { return p.ProjectID == skip || !policy.CrossProject(p) }), nil
}

// selectorLabels is the match_labels of a possibly absent selector, to
// narrow a listing (expressions are applied by the policy package).
func selectorLabels(s *apiv1.Selector) map[string]string {
	if s == nil {
		return nil
	}
	return s.MatchLabels
}

// selectedBy lists the environments p may select: its owner, or those
// carrying its selector's labels.
func selectedBy(ctx context.Context, r store.Reader, p apiv1.Policy) ([]apiv1.Environment, error) {
	if p.OwnerEnvironmentID != "" {
		e, err := r.GetEnvironment(ctx, p.OwnerEnvironmentID)
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil
		}
		return []apiv1.Environment{e}, err
	}
	return Environments(ctx, r, p.ProjectID, p.EnvironmentSelector.MatchLabels)
}

// PolicyChangeAffects returns the environments whose rules a policy change
// touches (before nil: created; after nil: deleted).
func PolicyChangeAffects(ctx context.Context, r store.Reader, before, after *apiv1.Policy) ([]string, error) {
	var envs []apiv1.Environment
	for _, p := range []*apiv1.Policy{before, after} {
		if p == nil {
			continue
		}
		sel, err := selectedBy(ctx, r, *p)
		if err != nil {
			return nil, err
		}
		envs = append(envs, sel...)
	}
	return policy.Affected(before, after, envs), nil
}

// EnvironmentChangeAffects returns the environments whose rules a change to
// one environment touches, itself included when its own rules change
// (before nil: created; after nil: removed).
func EnvironmentChangeAffects(ctx context.Context, r store.Reader, before, after *apiv1.Environment) ([]string, error) {
	changed := after
	if changed == nil {
		changed = before
	}
	policies, err := ProjectPolicies(ctx, r, changed.ProjectID)
	if err != nil {
		return nil, err
	}
	return EnvironmentChangeAffectsAmong(ctx, r, policies, before, after)
}

// EnvironmentChangeAffectsAmong is EnvironmentChangeAffects for a caller
// that has already loaded the project's policies in this transaction.
func EnvironmentChangeAffectsAmong(ctx context.Context, r store.Reader, policies []apiv1.Policy, before, after *apiv1.Environment) ([]string, error) {
	changed := after
	if changed == nil {
		changed = before
	}
	// Other environments only matter through selector peers; a project
	// without them is not read at all.
	var envs []apiv1.Environment
	var err error
	if slices.ContainsFunc(policies, func(p apiv1.Policy) bool { return len(policy.SelectorPeers(p)) > 0 }) {
		if envs, err = Environments(ctx, r, changed.ProjectID, nil); err != nil {
			return nil, err
		}
	}
	cross, err := crossProjectPolicies(ctx, r, changed.ProjectID)
	if err != nil {
		return nil, err
	}
	var projects map[string]map[string]string
	if len(cross) > 0 || slices.ContainsFunc(policies, policy.CrossProject) {
		if projects, err = AllProjectLabels(ctx, r); err != nil {
			return nil, err
		}
	}
	ids := policy.AffectedByEnvironment(before, after, policies, envs, projects)
	// Another project's policy that sees the change re-enforces what it
	// selects there.
	return selectedBySome(ctx, r, cross, ids, func(p apiv1.Policy) bool { return policy.SeesChange(p, before, after, projects) })
}

// selectedBySome is ids and the environments each policy of cross for
// which sees is true selects, sorted and without repeats.
func selectedBySome(ctx context.Context, r store.Reader, cross []apiv1.Policy, ids []string, sees func(apiv1.Policy) bool) ([]string, error) {
	for _, p := range cross {
		if !sees(p) {
			continue
		}
		sel, err := selectedBy(ctx, r, p)
		if err != nil {
			return nil, err
		}
		ids = append(ids, policy.SelectedEnvironments(p, sel)...)
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// ProjectChangeAffects returns the environments whose rules a change to
// a project's labels touches: those selected by policies, of any
// project, whose project_selector peers pick it before or after but not
// both.
func ProjectChangeAffects(ctx context.Context, r store.Reader, before, after apiv1.Project) ([]string, error) {
	if maps.Equal(before.Labels, after.Labels) {
		return nil, nil
	}
	cross, err := crossProjectPolicies(ctx, r, "")
	if err != nil {
		return nil, err
	}
	return selectedBySome(ctx, r, cross, nil, func(p apiv1.Policy) bool { return policy.ProjectFlips(p, before, after) })
}

// Invalidate bumps the enforcement generation of the environments ids
// (except skip, which the caller has bumped itself), marking their rules
// stale until the reconciler applies the new ones. It returns the ids it
// bumped; environments that no longer exist are ignored.
func Invalidate(ctx context.Context, tx store.Tx, ids []string, skip string) ([]string, error) {
	var bumped []string
	for _, id := range ids {
		if id == skip {
			continue
		}
		e, err := tx.GetEnvironment(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		e.Enforcement.Generation++
		e.Enforcement.Enforced = false
		if err := tx.UpdateEnvironment(ctx, e); err != nil {
			return nil, err
		}
		bumped = append(bumped, id)
	}
	return bumped, nil
}

// Effective computes env's effective policy from the store, reading only
// the environments its policies' selector peers can pick.
func Effective(ctx context.Context, r store.Reader, env apiv1.Environment) (apiv1.EffectivePolicy, error) {
	policies, err := ProjectPolicies(ctx, r, env.ProjectID)
	if err != nil {
		return apiv1.EffectivePolicy{}, err
	}
	var selected []apiv1.Policy
	var peers []apiv1.Environment
	var projects map[string]map[string]string
	seen := map[string]bool{}
	add := func(projectID string, labels map[string]string) error {
		envs, err := Environments(ctx, r, projectID, labels)
		for _, e := range envs {
			if !seen[e.ID] {
				seen[e.ID] = true
				peers = append(peers, e)
			}
		}
		return err
	}
	for _, p := range policies {
		if !policy.AppliesTo(p, env) {
			continue
		}
		selected = append(selected, p)
		for _, peer := range policy.SelectorPeers(p) {
			labels := selectorLabels(peer.EnvironmentSelector)
			if peer.ProjectSelector == nil {
				if err := add(env.ProjectID, labels); err != nil {
					return apiv1.EffectivePolicy{}, err
				}
				continue
			}
			if projects == nil {
				if projects, err = AllProjectLabels(ctx, r); err != nil {
					return apiv1.EffectivePolicy{}, err
				}
			}
			for _, id := range slices.Sorted(maps.Keys(projects)) {
				if !policy.Selects(*peer.ProjectSelector, projects[id]) {
					continue
				}
				if err := add(id, labels); err != nil {
					return apiv1.EffectivePolicy{}, err
				}
			}
		}
	}
	return policy.EffectiveAcross(env, selected, peers, projects), nil
}

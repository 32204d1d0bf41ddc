package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// The per-project limits and the environment quota (apiv1/limits.go). They
// are counted inside the transaction that would cross them, and the store
// runs one write transaction at a time, so concurrent creates at the
// boundary can never pass a limit together.
//
// Crossing one is 409: the request is valid, and the same request succeeds
// once the project's state changes (RFC 9110, 15.5.10), which 422 (content
// that cannot be processed) would not say.

func limitExceeded(field, format string, args ...any) *problem.Error {
	return problem.Field(problem.Limit, field, fmt.Sprintf(format, args...))
}

// projectSize is what a project's policies hold, without the policy
// skip (the one a patch replaces); bytes is their specs' JSON, counted
// only when withBytes is set.
func projectSize(ctx context.Context, r store.Reader, projectID, skip string, withBytes bool) (count int, size apiv1.PolicySize, bytes int, err error) {
	policies, err := ProjectPolicies(ctx, r, projectID)
	if err != nil {
		return 0, size, 0, err
	}
	count, size, bytes = sizeOf(policies, skip, withBytes)
	return count, size, bytes, nil
}

// sizeOf is projectSize over policies already loaded.
func sizeOf(policies []apiv1.Policy, skip string, withBytes bool) (count int, size apiv1.PolicySize, bytes int) {
	for _, p := range policies {
		if p.ID == skip {
			continue
		}
		count++
		size = size.Add(p.Size())
		if withBytes {
			bytes += specBytes(p.PolicySpec)
		}
	}
	return count, size, bytes
}

func specBytes(s apiv1.PolicySpec) int {
	b, _ := json.Marshal(s) // a PolicySpec always marshals
	return len(b)
}

func environmentCount(ctx context.Context, r store.Reader, projectID string) (int, error) {
	n, err := r.CountProjectEnvironments(ctx, projectID)
	return n[projectID], err
}

// checkEnvironmentRoom is the room a project needs for one more
// environment: its quota, and the resolved peers its selector peers would
// then list. It also answers 404 when the project does not exist. It
// returns the project's policies, which the create needs again.
func checkEnvironmentRoom(ctx context.Context, tx store.Tx, projectID string) ([]apiv1.Policy, error) {
	p, err := tx.GetProject(ctx, projectID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, NoSuchProject(projectID)
	}
	if err != nil {
		return nil, err
	}
	policies, err := ProjectPolicies(ctx, tx, projectID)
	if err != nil {
		return nil, err
	}
	_, size, _ := sizeOf(policies, "", false)
	// Counting walks the project's environments: only a quota or selector
	// peers need it, and each bounds the count it makes (the quota, or the
	// resolved peers), so a project without either creates in constant time.
	if p.EnvironmentQuota == 0 && size.SelectorPeers == 0 {
		return policies, nil
	}
	n, err := environmentCount(ctx, tx, projectID)
	if err != nil {
		return nil, err
	}
	if p.EnvironmentQuota > 0 && int64(n) >= p.EnvironmentQuota {
		return nil, limitExceeded("project_id", "project %s is at its environment_quota of %d environments (it has %d, those being deleted included): delete one, or ask an admin to raise the quota",
			projectID, p.EnvironmentQuota, n)
	}
	if size.SelectorPeers > 0 && size.SelectorPeers*(n+1) > apiv1.MaxResolvedPeersPerProject {
		return nil, limitExceeded("project_id", "is past the limit of %d resolved peers per project (environment_selector peers times environments): project %s has %d environment_selector peers, so %d environments would make %d",
			apiv1.MaxResolvedPeersPerProject, projectID, size.SelectorPeers, n+1, size.SelectorPeers*(n+1))
	}
	return policies, nil
}

// checkPolicyRoom checks that the project of a policy has room for next,
// which replaces the policy replacing ("" for a new one). Only growth is
// refused, so that a project already past a limit can still shrink.
func checkPolicyRoom(ctx context.Context, tx store.Tx, field, projectID, replacing string, next apiv1.PolicySpec) error {
	count, others, otherBytes, err := projectSize(ctx, tx, projectID, replacing, true)
	if err != nil {
		return err
	}
	if replacing == "" && count+1 > apiv1.MaxPoliciesPerProject {
		return limitExceeded(field, "is past the limit of %d policies per project: project %s has %d", apiv1.MaxPoliciesPerProject, projectID, count)
	}
	before, beforeBytes := others, otherBytes
	if replacing != "" {
		cur, err := tx.GetPolicy(ctx, replacing)
		if err != nil {
			return err
		}
		before, beforeBytes = others.Add(cur.Size()), otherBytes+specBytes(cur.PolicySpec)
	}
	after, afterBytes := others.Add(next.Size()), otherBytes+specBytes(next)
	if e := after.Entries(); e > apiv1.MaxPolicyEntriesPerProject && e > before.Entries() {
		return limitExceeded(field, "is past the limit of %d policy entries per project (rules, peers, ports and except entries over all its policies): project %s would have %d",
			apiv1.MaxPolicyEntriesPerProject, projectID, e)
	}
	if afterBytes > apiv1.MaxPolicyBytesPerProject && afterBytes > beforeBytes {
		return limitExceeded(field, "is past the limit of %d bytes of policies per project (the JSON of their specs): project %s would have %d",
			apiv1.MaxPolicyBytesPerProject, projectID, afterBytes)
	}
	if after.SelectorPeers > before.SelectorPeers {
		n, err := environmentCount(ctx, tx, projectID)
		if err != nil {
			return err
		}
		if got := after.SelectorPeers * n; got > apiv1.MaxResolvedPeersPerProject {
			return limitExceeded(field, "is past the limit of %d resolved peers per project (environment_selector peers times environments): project %s would have %d environment_selector peers and has %d environments, %d in all",
				apiv1.MaxResolvedPeersPerProject, projectID, after.SelectorPeers, n, got)
		}
	}
	return nil
}

// patchedRulesField names a field that a policy patch sets and that makes
// a policy bigger, for a limit error: the body of a patch has no project_id.
func patchedRulesField(in apiv1.PolicyPatch) string {
	switch {
	case in.Ingress != nil:
		return "ingress"
	case in.Egress != nil:
		return "egress"
	case in.EnvironmentSelector != nil:
		return "environment_selector"
	}
	return "description"
}

package control

import (
	"context"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// DriftPrefix starts the enforcement message of an environment whose
// kernel objects changed outside isolationd, until it is repaired.
const DriftPrefix = "drift: "

// Drifted records that the driver found environment id's kernel objects
// changed outside isolationd (reason says what): it is not enforced, with
// the reason, audited as environment.drift, and reconciled again, which
// repairs it (Enforced then records environment.repair).
func (s *Service) Drifted(ctx context.Context, cause, id, reason string) error {
	return s.transition(ctx, cause, id, func(tx store.Tx, cur *apiv1.Environment) (step, error) {
		st := step{reconcile: []string{id}}
		if !apiv1.StateIsTransient(cur.State) && cur.State != apiv1.StateReady {
			return step{}, nil
		}
		msg := DriftPrefix + reason
		if cur.Enforcement.Message == msg {
			return st, nil
		}
		cur.Enforcement.Enforced = false
		cur.Enforcement.Message = msg
		st.action, st.outcome, st.reason = "environment.drift", apiv1.OutcomeFailure, reason
		return st, nil
	})
}

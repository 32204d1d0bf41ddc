package api

import (
	"context"
	"net/http"
	"strconv"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/audit"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// verifyAudit verifies the audit chain from from_seq (default 1) to
// to_seq (default the newest event), anchored at the stored hash of the
// event before from_seq, with the server's HMAC key when it has one.
func (a *API) verifyAudit(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r)
	if err != nil {
		return err
	}
	fe := checkParams(q, []string{"from_seq", "to_seq"})
	seq := func(name string) int64 {
		if !q.Has(name) {
			return 0
		}
		n, err := strconv.ParseInt(q.Get(name), 10, 64)
		if err != nil || n < 1 {
			fe = append(fe, apiv1.FieldError{Field: name, Message: "must be an audit event's seq, 1 or more"})
		}
		return n
	}
	from, to := max(seq("from_seq"), 1), seq("to_seq")
	if to > 0 && to < from {
		fe = append(fe, apiv1.FieldError{Field: "to_seq", Message: "must not be before from_seq"})
	}
	if fe != nil {
		return problem.Invalid(fe)
	}
	// As the list does: the refusals answered before this request first.
	if err := a.denials.sync(r.Context()); err != nil {
		return err
	}
	start := audit.Result{LastSeq: from - 1, LastHash: audit.GenesisHash}
	if from > 1 {
		prev, _, err := a.store.ListAudit(r.Context(), store.AuditQuery{AfterSeq: from - 2, Limit: 1})
		if err != nil {
			return err
		}
		// A missing anchor leaves a hash nothing matches: the range's
		// first event is then the break.
		start.LastHash = "none: no event at seq " + strconv.FormatInt(from-1, 10)
		if len(prev) == 1 && prev[0].Seq == from-1 {
			start.LastHash = prev[0].Hash
			if prev[0].KeyID != "" {
				start.KeyID, start.FirstKeyedSeq = prev[0].KeyID, prev[0].Seq
			}
		}
	}
	pager := func(ctx context.Context, after int64) ([]apiv1.AuditEvent, error) {
		if to > 0 && after >= to {
			return nil, nil
		}
		evs, _, err := a.store.ListAudit(ctx, store.AuditQuery{AfterSeq: after, Limit: store.MaxLimit})
		for i, ev := range evs {
			if to > 0 && ev.Seq > to {
				evs = evs[:i]
				break
			}
		}
		return evs, err
	}
	res, err := audit.VerifyFrom(r.Context(), pager, a.auditKey, start)
	if err != nil {
		return err
	}
	out := apiv1.AuditVerification{FromSeq: from, ToSeq: res.LastSeq, Events: res.Events, OK: res.OK(), KeyID: res.KeyID}
	if b := res.Broken; b != nil {
		out.Broken = &apiv1.AuditBreak{Seq: b.Seq, ID: b.ID, Reason: b.Reason, NeedsKey: b.NeedsKey}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

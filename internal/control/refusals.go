package control

import (
	"context"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// AppendRefusals appends the audit events of refused requests (built with
// Event) in one transaction: a refusal changes nothing else, and the API
// batches them so that a flood of refusals is not a flood of writes.
func (s *Service) AppendRefusals(ctx context.Context, events []apiv1.AuditEvent) error {
	return s.appendAudit(ctx, events...)
}

// appendAudit appends audit events that change nothing else, in one
// transaction.
func (s *Service) appendAudit(ctx context.Context, events ...apiv1.AuditEvent) error {
	return s.store.Update(ctx, func(tx store.Tx) error {
		for _, ev := range events {
			if _, err := tx.AppendAudit(ctx, ev); err != nil {
				return err
			}
		}
		return nil
	})
}

package control

import (
	"context"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// SIEMSinkResource is the resource type of the audit events about SIEM
// sinks (siem.lagging, siem.caught_up, siem.gap).
const SIEMSinkResource = "siem_sink"

// SIEMNotice audits what the SIEM exporter reports about a sink: that it
// stays behind, has caught up, or will never receive some records. The
// server makes these events itself; the sink receives them too.
func (s *Service) SIEMNotice(ctx context.Context, action, sink, outcome, reason string) error {
	ev := s.Event(Call{Actor: ServerActor}, action, apiv1.ResourceRef{Type: SIEMSinkResource, ID: sink}, "", outcome)
	ev.Reason = reason
	return s.appendAudit(ctx, ev)
}

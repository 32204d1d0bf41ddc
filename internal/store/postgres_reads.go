package store

import (
	"context"
	"net/netip"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// The reads outside a transaction: the shared reader's, with a failure
// to reach PostgreSQL made ErrUnavailable (wherever in the reader it
// surfaced: the query, a row or the end of the rows). No cache: another
// server may have written since.

func read[T any](v T, err error) (T, error) { return v, pgUnavailable(err) }

func read2[T, U any](v T, u U, err error) (T, U, error) { return v, u, pgUnavailable(err) }

func (p *Postgres) GetAddress(ctx context.Context, addr netip.Addr) (Address, error) {
	return read(p.r.GetAddress(ctx, addr))
}

func (p *Postgres) ListAddresses(ctx context.Context, q AddressQuery) ([]Address, error) {
	return read(p.r.ListAddresses(ctx, q))
}

func (p *Postgres) OldestFreedAddress(ctx context.Context, first, last netip.Addr, notAfter time.Time) (Address, error) {
	return read(p.r.OldestFreedAddress(ctx, first, last, notAfter))
}

func (p *Postgres) AddressUsage(ctx context.Context, first, last netip.Addr) (AddressUsage, error) {
	return read(p.r.AddressUsage(ctx, first, last))
}

func (p *Postgres) GetAddressCursor(ctx context.Context, pool netip.Prefix) (netip.Addr, error) {
	return read(p.r.GetAddressCursor(ctx, pool))
}

func (p *Postgres) GetIdempotency(ctx context.Context, scope, key string) (IdempotencyRecord, error) {
	return read(p.r.GetIdempotency(ctx, scope, key))
}

func (p *Postgres) ListAudit(ctx context.Context, q AuditQuery) ([]apiv1.AuditEvent, string, error) {
	return read2(p.r.ListAudit(ctx, q))
}

func (p *Postgres) LastAudit(ctx context.Context) (apiv1.AuditEvent, error) {
	return read(p.r.LastAudit(ctx))
}

func (p *Postgres) LastFlowID(ctx context.Context) (int64, error) {
	return read(p.r.LastFlowID(ctx))
}

func (p *Postgres) ListFlows(ctx context.Context, q FlowQuery) ([]apiv1.Flow, string, error) {
	return read2(p.r.ListFlows(ctx, q))
}

func (p *Postgres) GetProject(ctx context.Context, id string) (apiv1.Project, error) {
	return read(p.r.GetProject(ctx, id))
}

func (p *Postgres) ListProjects(ctx context.Context, q ListQuery) ([]apiv1.Project, string, error) {
	return read2(p.r.ListProjects(ctx, q))
}

func (p *Postgres) GetEnvironment(ctx context.Context, id string) (apiv1.Environment, error) {
	return read(p.r.GetEnvironment(ctx, id))
}

func (p *Postgres) GetEnvironmentJSON(ctx context.Context, id string) (EnvironmentJSON, error) {
	return read(p.r.GetEnvironmentJSON(ctx, id))
}

func (p *Postgres) ListEnvironments(ctx context.Context, q ListQuery) ([]apiv1.Environment, string, error) {
	return read2(p.r.ListEnvironments(ctx, q))
}

func (p *Postgres) CountEnvironments(ctx context.Context) (map[string]int, error) {
	return read(p.r.CountEnvironments(ctx))
}

func (p *Postgres) CountProjectEnvironments(ctx context.Context, projectIDs ...string) (map[string]int, error) {
	return read(p.r.CountProjectEnvironments(ctx, projectIDs...))
}

func (p *Postgres) GetPolicy(ctx context.Context, id string) (apiv1.Policy, error) {
	return read(p.r.GetPolicy(ctx, id))
}

func (p *Postgres) ListPolicies(ctx context.Context, q ListQuery) ([]apiv1.Policy, string, error) {
	return read2(p.r.ListPolicies(ctx, q))
}

func (p *Postgres) GetAssertion(ctx context.Context, id string) (apiv1.Assertion, error) {
	return read(p.r.GetAssertion(ctx, id))
}

func (p *Postgres) ListAssertions(ctx context.Context, q ListQuery) ([]apiv1.Assertion, string, error) {
	return read2(p.r.ListAssertions(ctx, q))
}

func (p *Postgres) GetToken(ctx context.Context, id string) (TokenRecord, error) {
	return read(p.r.GetToken(ctx, id))
}

func (p *Postgres) GetTokenByHash(ctx context.Context, hash string) (TokenRecord, error) {
	return read(p.r.GetTokenByHash(ctx, hash))
}

func (p *Postgres) ListTokens(ctx context.Context, q ListQuery) ([]TokenRecord, string, error) {
	return read2(p.r.ListTokens(ctx, q))
}

func (p *Postgres) GetSIEMCursor(ctx context.Context, sink, source string) (int64, bool, error) {
	return read2(p.r.GetSIEMCursor(ctx, sink, source))
}

func (p *Postgres) GetUISession(ctx context.Context, id string) (UISession, error) {
	return read(p.r.GetUISession(ctx, id))
}

func (p *Postgres) GetUISessionByHash(ctx context.Context, hash string) (UISession, error) {
	return read(p.r.GetUISessionByHash(ctx, hash))
}

package apiv1

import (
	"time"
)

// Assertions are a project's policy tests, as Tailscale's ACL tests are:
// traffic that must stay allowed, or must stay denied, whatever policy,
// environment or project change comes next. Every write that changes what
// is allowed is checked against them before it commits, and refused when
// it would break one.

// What an assertion expects of its packets.
const (
	ExpectAllow = "allow"
	ExpectDeny  = "deny"
)

// AssertionSource is where an assertion's traffic comes from: one
// environment of the assertion's project, by name, or those its selector
// picks. Exactly one is set.
type AssertionSource struct {
	Environment         string    `json:"environment,omitempty"`
	EnvironmentSelector *Selector `json:"environment_selector,omitempty"`
}

// AssertionTarget is where an assertion's traffic goes: an environment of
// the assertion's project by name; environments by selector, with
// Kubernetes' namespaceSelector semantics as in a policy peer
// (project_selector reaches other projects); a CIDR (the packet goes to
// its first and its last address); or a host name, matched against fqdn
// peers. Exactly one of environment, the selectors, cidr and fqdn is set.
type AssertionTarget struct {
	Environment         string    `json:"environment,omitempty"`
	EnvironmentSelector *Selector `json:"environment_selector,omitempty"`
	ProjectSelector     *Selector `json:"project_selector,omitempty"`
	CIDR                string    `json:"cidr,omitempty"`
	FQDN                string    `json:"fqdn,omitempty"`
}

// IsEnvironment reports whether t names environments (by name or by
// selectors) rather than an address or a host name: traffic to them needs
// their ingress too.
func (t AssertionTarget) IsEnvironment() bool {
	return t.Environment != "" || t.EnvironmentSelector != nil || t.ProjectSelector != nil
}

// AssertionSpec is the user-controlled part of an assertion: every packet
// From To on Protocol and Port must be allowed (expect allow) or denied
// (expect deny). A source or target that picks no environment holds.
type AssertionSpec struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	From        AssertionSource `json:"from"`
	To          AssertionTarget `json:"to"`
	// Protocol defaults to tcp; Port is required but for icmp, which
	// takes none.
	Protocol string `json:"protocol"`
	Port     int    `json:"port,omitempty"`
	Expect   string `json:"expect"`
}

// Assertion is a stored assertion. It has no PATCH: change one by
// deleting it and creating another.
type Assertion struct {
	ID        string `json:"id"`
	ProjectID string `json:"project_id"`
	AssertionSpec
	Generation int64     `json:"generation"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	ETag       string    `json:"etag"`
}

// AssertionCreate is the body of POST /v1/projects/{id}/assertions.
type AssertionCreate struct {
	AssertionSpec
}

// Validate checks an assertion creation body.
func (c AssertionCreate) Validate() []FieldError { return c.AssertionSpec.Validate() }

// Validate checks an assertion spec.
func (s AssertionSpec) Validate() []FieldError {
	e := errs(ValidateName("name", s.Name))
	e = append(e, ValidateDescription("description", s.Description)...)
	e = append(e, s.From.validate("from")...)
	e = append(e, s.To.validate("to")...)
	e = append(e, validatePacketPort(s.Protocol, s.Port)...)
	if s.Expect != ExpectAllow && s.Expect != ExpectDeny {
		e.add("expect", "must be one of %s, %s", ExpectAllow, ExpectDeny)
	}
	return nilIfEmpty(e)
}

func (s AssertionSource) validate(field string) []FieldError {
	var e errs
	if (s.Environment != "") == (s.EnvironmentSelector != nil) {
		e.add(field, "must set exactly one of environment and environment_selector")
	}
	if s.Environment != "" {
		e = append(e, ValidateName(path(field, "environment"), s.Environment)...)
	}
	if s.EnvironmentSelector != nil {
		e = append(e, ValidateSelector(path(field, "environment_selector"), *s.EnvironmentSelector)...)
	}
	return e
}

func (t AssertionTarget) validate(field string) []FieldError {
	var e errs
	set := 0
	for _, s := range []bool{t.Environment != "", t.EnvironmentSelector != nil || t.ProjectSelector != nil, t.CIDR != "", t.FQDN != ""} {
		if s {
			set++
		}
	}
	if set != 1 {
		e.add(field, "must set exactly one of environment, cidr, fqdn and the selectors (environment_selector, project_selector or both)")
	}
	if t.Environment != "" {
		e = append(e, ValidateName(path(field, "environment"), t.Environment)...)
	}
	if t.EnvironmentSelector != nil {
		e = append(e, ValidateSelector(path(field, "environment_selector"), *t.EnvironmentSelector)...)
	}
	if t.ProjectSelector != nil {
		e = append(e, ValidateSelector(path(field, "project_selector"), *t.ProjectSelector)...)
	}
	if t.CIDR != "" {
		e = append(e, ValidateCIDR(path(field, "cidr"), t.CIDR)...)
	}
	if t.FQDN != "" {
		if fe := validHostName(NormalizeFQDN(t.FQDN)); fe != "" {
			e.add(path(field, "fqdn"), "%s", fe)
		}
	}
	return e
}

// Normalize returns the spec in the form the server stores: tcp for an
// empty protocol, selectors and the host name in canonical form.
func (s AssertionSpec) Normalize() AssertionSpec {
	s.Protocol = cmpOr(s.Protocol, ProtocolTCP)
	s.From.EnvironmentSelector = normalizeSelectorPtr(s.From.EnvironmentSelector)
	s.To.EnvironmentSelector = normalizeSelectorPtr(s.To.EnvironmentSelector)
	s.To.ProjectSelector = normalizeSelectorPtr(s.To.ProjectSelector)
	s.To.FQDN = NormalizeFQDN(s.To.FQDN)
	return s
}

func normalizeSelectorPtr(s *Selector) *Selector {
	if s == nil {
		return nil
	}
	n := s.Normalize()
	return &n
}

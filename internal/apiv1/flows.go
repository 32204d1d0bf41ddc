package apiv1

import (
	"net/netip"
	"time"
)

// Flow verdicts.
const (
	VerdictAllowed = "allowed"
	VerdictDenied  = "denied"
)

// Flow is one flow record: a connection an environment opened or
// received, allowed or denied, from the environment's side (direction
// egress: it opened it, src is the environment). Allowed flows are written
// when the kernel forgets the connection, with its packets and bytes in
// both directions; denied ones as the kernel counts them, about once a
// second. Count is how many connections (allowed) or packets (denied) the
// record stands for: records of the same peer, protocol and port within a
// second are aggregated, with FirstSeen and LastSeen spanning them, and
// SrcPort is then absent. A denied record with no peer address counts
// packets the kernel could not itemise (its table of denied peers was
// full); one with a peer but no port counts a port scan (more than
// MaxFlowPortsPerPeer ports of one peer in one second).
//
// ID grows with every record stored, and is the cursor of the list and
// of anything that follows the records (a SIEM export).
type Flow struct {
	ID            int64     `json:"id"`
	Time          time.Time `json:"time"`
	EnvironmentID string    `json:"environment_id"`
	ProjectID     string    `json:"project_id"`
	Direction     string    `json:"direction"`
	Protocol      string    `json:"protocol,omitempty"`
	SrcAddress    string    `json:"src_address,omitempty"`
	SrcPort       int       `json:"src_port,omitempty"`
	DstAddress    string    `json:"dst_address,omitempty"`
	DstPort       int       `json:"dst_port,omitempty"`
	FQDN          string    `json:"fqdn,omitempty"`
	Verdict       string    `json:"verdict"`
	PolicyID      string    `json:"policy_id,omitempty"`
	// Rule is the index of the policy's rule that allowed the flow
	// (CheckResult's matched.rule_index); absent when denied.
	Rule      *int      `json:"rule,omitempty"`
	Packets   int64     `json:"packets"`
	Bytes     int64     `json:"bytes"`
	Count     int64     `json:"count"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
}

// MaxFlowPortsPerPeer is how many ports of one peer a second's denied
// records list one by one; more become one record without a port.
const MaxFlowPortsPerPeer = 32

// FlowFilter is what a list of flow records asks for; zero fields do not
// filter.
type FlowFilter struct {
	Verdict   string
	Direction string
	// Peer matches records whose source or destination is this address.
	Peer         string
	Since, Until time.Time
}

// Validate checks the filter's values, naming each query parameter that
// is wrong.
func (f FlowFilter) Validate() []FieldError {
	var e errs
	if f.Verdict != "" && f.Verdict != VerdictAllowed && f.Verdict != VerdictDenied {
		e.add("verdict", "must be one of allowed, denied")
	}
	if f.Direction != "" && f.Direction != Ingress && f.Direction != Egress {
		e.add("direction", msgDirection)
	}
	if f.Peer != "" {
		if a, err := netip.ParseAddr(f.Peer); err != nil || a.Zone() != "" {
			e.add("peer", "must be an IPv4 or IPv6 address, such as 198.18.0.2")
		}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && f.Until.Before(f.Since) {
		e.add("until", "must not be before since")
	}
	return e
}

// CanonicalPeer is Peer as records spell addresses (an IPv4-mapped IPv6
// address as IPv4), or "" when it does not parse.
func (f FlowFilter) CanonicalPeer() string {
	a, err := netip.ParseAddr(f.Peer)
	if err != nil {
		return ""
	}
	return a.Unmap().String()
}

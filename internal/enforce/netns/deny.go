package netns

import (
	"encoding/binary"
	"fmt"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Deny fast: a flow an environment starts that its egress rules do not
// allow is refused at once, on the router side, so that the process sees
// the failure instead of waiting for a timeout: a TCP reset for TCP, ICMP
// "administratively prohibited" (ICMPv6 for IPv6) for anything else.
// Packets sent to an environment that its ingress rules deny, and a
// reply an environment sends in a flow it may no longer answer, are still
// dropped silently: a remote end learns nothing of what is there.
//
// The router sends the ICMP error itself, and it passes the router's
// postrouting chain, which would judge it as a packet to the environment
// and drop it (the refused flow was never confirmed, so conntrack relates
// nothing to it). The refused packet is marked, the router namespace
// reflects a packet's mark onto the errors it sends in answer
// (net.ipv4.fwmark_reflect, net.ipv6.fwmark_reflect), and postrouting
// lets marked packets pass. No packet from outside the router namespace
// carries a mark: the kernel clears it when a packet crosses namespaces.

// refusedMark is the mark of a packet refused by deny fast, and of the
// error the router sends back for it.
const refusedMark = 0x150de17

// The kernel's reject types and codes (linux/netfilter/nf_tables.h),
// which x/sys/unix does not name.
const (
	rejectTCPReset       = 1 // NFT_REJECT_TCP_RST
	rejectICMPX          = 2 // NFT_REJECT_ICMPX_UNREACH: the family's own ICMP
	icmpxAdminProhibited = 3 // NFT_REJECT_ICMPX_ADMIN_PROHIBITED
)

func markBytes() []byte { return binary.NativeEndian.AppendUint32(nil, refusedMark) }

// refuseRules refuse the flows an environment starts that no egress
// allow accepted: they come last in its <env>_from chain, before the drop.
func refuseRules() []chainRule {
	original := []expr.Any{
		&expr.Ct{Key: expr.CtKeyDIRECTION, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{0}},
	}
	mark := []expr.Any{
		&expr.Immediate{Register: reg1, Data: markBytes()},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1},
	}
	tcp := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.IPPROTO_TCP}},
	}
	return []chainRule{
		{fmt.Sprintf("ct direction original meta l4proto tcp meta mark set %#x reject with tcp reset", refusedMark),
			concat(original, tcp, mark, []expr.Any{&expr.Reject{Type: rejectTCPReset}})},
		{fmt.Sprintf("ct direction original meta mark set %#x reject with icmpx admin-prohibited", refusedMark),
			concat(original, mark, []expr.Any{&expr.Reject{Type: rejectICMPX, Code: icmpxAdminProhibited}})},
	}
}

// refusalRule, first in the router's postrouting chain, lets the errors
// the router sends for refused flows reach the environment.
func refusalRule() chainRule {
	return chainRule{fmt.Sprintf("meta mark %#x accept", refusedMark), []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: markBytes()},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}}
}

// denySysctls are the router namespace's settings deny fast needs: marks
// reflected onto errors, and no rate limit on them (the kernel's default
// sends an environment one error a second after a burst of six, and a
// process would wait for the rest).
var denySysctls = [][2]string{
	{"net.ipv4.fwmark_reflect", "1"},
	{"net.ipv6.fwmark_reflect", "1"},
	{"net.ipv4.icmp_ratelimit", "0"},
	{"net.ipv6.icmp.ratelimit", "0"},
}

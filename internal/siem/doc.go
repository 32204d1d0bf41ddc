// Package siem exports isolationd's audit events (and flow records) to
// security teams' systems: RFC 5424 syslog over UDP, TCP (RFC 6587 octet
// counting) or TLS (RFC 5425), HTTPS webhooks signed with HMAC-SHA256,
// and files, each record encoded as our JSON, OCSF 1.3 or CEF.
//
// Delivery is at least once and in order per sink: each sink follows each
// source from a cursor kept in the store (store.Tx.PutSIEMCursor), on a
// goroutine of its own, so a slow or dead receiver only falls behind. Its
// lag is a metric, part of /readyz, and an audit event once it stays
// behind too long; a sink further behind than its retention skips ahead
// and says so (siem.gap).
//
// Arrows: siem reads the store and apiv1; internal/server assembles it,
// subscribes it to the store's commits and turns its notices into audit
// events through control.
package siem

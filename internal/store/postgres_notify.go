package store

import (
	"context"
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// notice is one commit announcement on PostgresChannel: the ids a commit
// wrote and the seq range of its audit events, which the servers that
// receive it read from the table (a payload holds at most 8000 bytes).
type notice struct {
	Origin    string   `json:"o"`
	First     int64    `json:"f,omitempty"` // seq of the first audit event, 0 for none
	Last      int64    `json:"l,omitempty"`
	Envs      []string `json:"e,omitempty"`
	Tokens    []string `json:"t,omitempty"`
	Sessions  []string `json:"s,omitempty"`
	Reconcile []string `json:"r,omitempty"`
	Cause     string   `json:"c,omitempty"`
}

// maxNotice leaves room below PostgreSQL's 8000-byte payload limit for
// the estimate's slack.
const maxNotice = 7000

// notices encodes c as payloads of at most maxNotice bytes: the first
// carries the events' range and the cause; the ids are split across as
// many as they need. A commit that wrote nothing others care about has
// none.
func notices(origin string, c *Commit) []string {
	if len(c.Events) == 0 && len(c.Environments) == 0 && len(c.Tokens) == 0 && len(c.UISessions) == 0 && len(c.Reconcile) == 0 {
		return nil
	}
	cur := notice{Origin: origin, Cause: c.Cause}
	if n := len(c.Events); n > 0 {
		cur.First, cur.Last = c.Events[0].Seq, c.Events[n-1].Seq
	}
	var out []string
	size := base(cur)
	flush := func() {
		b, _ := json.Marshal(cur)
		out = append(out, string(b))
		cur = notice{Origin: origin, Cause: c.Cause}
		size = base(cur)
	}
	for _, list := range []struct {
		ids []string
		dst func(*notice) *[]string
	}{
		{c.Environments, func(n *notice) *[]string { return &n.Envs }},
		{c.Tokens, func(n *notice) *[]string { return &n.Tokens }},
		{c.UISessions, func(n *notice) *[]string { return &n.Sessions }},
		{c.Reconcile, func(n *notice) *[]string { return &n.Reconcile }},
	} {
		for _, id := range list.ids {
			// Quotes and a comma, escapes at most doubling the id, and the
			// field's name and brackets for its first id.
			cost := 2*len(id) + 3
			if size+cost+8 > maxNotice {
				flush()
			}
			dst := list.dst(&cur)
			if len(*dst) == 0 {
				size += 8
			}
			*dst = append(*dst, id)
			size += cost
		}
	}
	flush()
	return out
}

func base(n notice) int {
	b, _ := json.Marshal(n)
	return len(b)
}

// listenConn opens the connection that LISTENs for the other servers'
// commits.
func (p *Postgres) listenConn(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, p.listen)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+PostgresChannel); err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	return conn, nil
}

// Reconnection backoff of the listen connection.
const (
	listenRetryMin = 50 * time.Millisecond
	listenRetryMax = 2 * time.Second
)

// listenLoop announces the other servers' commits until ctx ends. When
// its connection drops it reconnects, waiting longer after each failure,
// and then announces a Resync: what was committed meanwhile was not
// heard.
func (p *Postgres) listenLoop(ctx context.Context, conn *pgx.Conn) {
	defer close(p.listenDone)
	wait := listenRetryMin
	for {
		for conn != nil {
			n, err := conn.WaitForNotification(ctx)
			if err != nil {
				conn.Close(context.Background())
				conn = nil
				break
			}
			p.remote(ctx, n.Payload)
		}
		if ctx.Err() != nil {
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		c, err := p.listenConn(ctx)
		if err != nil {
			wait = min(2*wait, listenRetryMax)
			continue
		}
		conn, wait = c, listenRetryMin
		p.announce(Commit{Resync: true})
	}
}

// remote announces another server's commit, its audit events read back
// by seq. Events that cannot be read make it a Resync.
func (p *Postgres) remote(ctx context.Context, payload string) {
	var n notice
	if err := json.Unmarshal([]byte(payload), &n); err != nil || n.Origin == p.origin {
		return
	}
	c := Commit{Environments: n.Envs, Tokens: n.Tokens, UISessions: n.Sessions, Reconcile: n.Reconcile, Cause: n.Cause}
	if n.First > 0 {
		events, err := p.events(ctx, n.First, n.Last)
		c.Events, c.Resync = events, err != nil
	}
	p.announce(c)
}

// events reads the audit events first to last.
func (p *Postgres) events(ctx context.Context, first, last int64) ([]apiv1.AuditEvent, error) {
	var out []apiv1.AuditEvent
	for after := first - 1; after < last; {
		page, _, err := p.ListAudit(ctx, AuditQuery{AfterSeq: after, Limit: int(min(last-after, MaxLimit))})
		if err != nil {
			return out, err
		}
		if len(page) == 0 {
			break
		}
		out = append(out, page...)
		after = page[len(page)-1].Seq
	}
	return out, nil
}

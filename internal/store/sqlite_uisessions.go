package store

import (
	"context"
	"time"
)

// UISession is a web console session as stored: the hash of its cookie's
// secret, never the secret, and the token it was signed in with, whose
// permissions it has for as long as both are valid.
type UISession struct {
	ID        string     `json:"id"`
	TokenID   string     `json:"token_id"`
	Hash      string     `json:"hash"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt time.Time  `json:"expires_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

var uiSessions = table[UISession]{
	noun: "console session", name: "ui_sessions",
	cols: []string{"hash", "token_id"},
	row: func(s UISession) (string, []any, map[string]string) {
		return s.ID, []any{s.Hash, s.TokenID}, nil
	},
	// Never repeat the hash: it identifies a secret.
	unique: func(UISession) string { return "a console session with the same secret already exists" },
	check:  func(s UISession) error { return checkSecretHash("console session", s.ID, s.Hash) },
}

func (r reader) GetUISession(ctx context.Context, id string) (UISession, error) {
	return get(ctx, r.q, uiSessions, "id", id)
}

func (r reader) GetUISessionByHash(ctx context.Context, hash string) (UISession, error) {
	return get(ctx, r.q, uiSessions, "hash", hash)
}

func (t *sqlTx) CreateUISession(ctx context.Context, s UISession) error {
	t.commit.UISessions = append(t.commit.UISessions, s.ID)
	return insert(ctx, t.q, uiSessions, s)
}

func (t *sqlTx) UpdateUISession(ctx context.Context, s UISession) error {
	t.commit.UISessions = append(t.commit.UISessions, s.ID)
	return replace(ctx, t.q, uiSessions, s)
}

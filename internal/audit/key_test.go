package audit_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/audit"
)

func testKey(t *testing.T, b byte) *audit.Key {
	t.Helper()
	k, err := audit.NewKey([]byte(strings.Repeat(string(b), 32)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// The keyed encoding is a stored format too. This value was computed by an
// independent implementation (Python hmac) of the documented encoding: the
// v1 fields, then the key id, under the HMAC domain.
func TestKeyHash_EncodingIsFrozen(t *testing.T) {
	k := testKey(t, 'k')
	if k.ID() != "b46e739679715322" {
		t.Fatalf("key id %s: the key fingerprint changed", k.ID())
	}
	ev := sampleEvent()
	ev.KeyID = k.ID()
	const want = "62b6f0a4faae298b065164214afbf3993ba893ac00d07746dfa17dc84e94cd90"
	if got := k.Hash(ev); got != want {
		t.Fatalf("Key.Hash(sample) = %s, want %s: the keyed encoding changed", got, want)
	}
	sealed, _, err := audit.Seal(ev, k)
	if err != nil || sealed.Hash != want || sealed.KeyID != k.ID() {
		t.Fatalf("Seal with a key = %s %s %v, want %s", sealed.Hash, sealed.KeyID, err, want)
	}
	ev.KeyID = "0000000000000000"
	if k.Hash(ev) == want {
		t.Fatal("the key id is not covered by the keyed hash")
	}
}

func TestKey_IsLongEnoughReadFromAFileAndNeverQuoted(t *testing.T) {
	if _, err := audit.NewKey([]byte("short")); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Fatalf("a 5-byte key: %v", err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.key")
	secret := strings.Repeat("ab", 32)
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := audit.ReadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	direct, _ := audit.NewKey([]byte(secret))
	if k.ID() != direct.ID() || len(k.ID()) != 16 || strings.Contains(secret, k.ID()) {
		t.Fatalf("key id %s from the file, %s direct: the line break must not count", k.ID(), direct.ID())
	}
	if err := os.WriteFile(path, []byte("too-short-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.ReadKeyFile(path); err == nil || strings.Contains(err.Error(), "too-short-secret") || !strings.Contains(err.Error(), path) {
		t.Fatalf("a short key file: %v; want an error naming the file, not the key", err)
	}
	if _, err := audit.ReadKeyFile(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing key file was accepted")
	}
}

// keyedChain builds n linked events, those from seq keyedFrom on sealed with k.
func keyedChain(t *testing.T, n, keyedFrom int, k *audit.Key) []apiv1.AuditEvent {
	t.Helper()
	var evs []apiv1.AuditEvent
	prev := audit.GenesisHash
	for i := 1; i <= n; i++ {
		ev := sampleEvent()
		ev.ID, ev.Seq, ev.PrevHash = fmt.Sprintf("aud_%d", i), int64(i), prev
		var key *audit.Key
		if i >= keyedFrom {
			key = k
		}
		ev, _, err := audit.Seal(ev, key)
		if err != nil {
			t.Fatal(err)
		}
		prev = ev.Hash
		evs = append(evs, ev)
	}
	return evs
}

func TestVerifyWithKey_SaysWhetherTheChainIsKeyedAndNamesTheFirstLinkItCannotVerify(t *testing.T) {
	k, other := testKey(t, 'k'), testKey(t, 'o')
	ctx := context.Background()

	res, err := audit.VerifyWithKey(ctx, pager(keyedChain(t, 6, 1, k), 4), k)
	if err != nil || !res.OK() || !res.Keyed() || res.KeyID != k.ID() || res.FirstKeyedSeq != 1 || res.Events != 6 {
		t.Fatalf("keyed chain with its key = %+v, %v", res, err)
	}
	// Keyed from seq 4: the events before predate the key.
	res, err = audit.VerifyWithKey(ctx, pager(keyedChain(t, 6, 4, k), 4), k)
	if err != nil || !res.OK() || res.FirstKeyedSeq != 4 || res.Events != 6 {
		t.Fatalf("chain keyed from seq 4 = %+v, %v", res, err)
	}
	// An unkeyed chain verifies as before, with or without a key, and says so.
	res, err = audit.VerifyWithKey(ctx, pager(chain(5), 2), k)
	if err != nil || !res.OK() || res.Keyed() {
		t.Fatalf("unkeyed chain with a key = %+v, %v", res, err)
	}

	for _, tc := range []struct {
		name     string
		evs      []apiv1.AuditEvent
		key      *audit.Key
		seq      int64
		because  string
		needsKey bool
	}{
		{"no key", keyedChain(t, 6, 3, k), nil, 3, "no key was given", true},
		{"wrong key", keyedChain(t, 6, 1, k), other, 1, "not with the key given", false},
		{"altered", func() []apiv1.AuditEvent { e := keyedChain(t, 6, 1, k); e[4].Reason = "x"; return e }(), k, 5, "hash mismatch", false},
		{"key id altered", func() []apiv1.AuditEvent { e := keyedChain(t, 6, 1, k); e[2].KeyID = other.ID(); return e }(), k, 3, "not with the key given", false},
		{"re-sealed unkeyed after keyed", func() []apiv1.AuditEvent {
			// Someone without the key rewrites the tail with plain SHA-256,
			// linking it correctly.
			e := keyedChain(t, 6, 1, k)
			for i := 3; i < len(e); i++ {
				e[i].PrevHash = e[i-1].Hash
				e[i], _, _ = audit.Seal(e[i], nil)
			}
			return e
		}(), k, 4, "not keyed, after keyed events", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := audit.VerifyWithKey(ctx, pager(tc.evs, 2), tc.key)
			if err != nil {
				t.Fatal(err)
			}
			if res.OK() || res.Broken.Seq != tc.seq || !strings.Contains(res.Broken.Reason, tc.because) || res.Broken.NeedsKey != tc.needsKey {
				t.Fatalf("broken = %+v, want seq %d because %q (needs key %v)", res.Broken, tc.seq, tc.because, tc.needsKey)
			}
			if res.Events != tc.seq-1 {
				t.Fatalf("%d events verified before the break at seq %d", res.Events, tc.seq)
			}
		})
	}
	// Verify without a key is VerifyWithKey(nil).
	res, _ = audit.Verify(ctx, pager(keyedChain(t, 3, 1, k), 2))
	if res.OK() || !res.Broken.NeedsKey || res.Broken.KeyID != k.ID() {
		t.Fatalf("Verify of a keyed chain = %+v", res.Broken)
	}
}

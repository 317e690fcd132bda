package auth

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice"
)

func TestGenerateParse(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 200; i++ {
		k, id, err := Generate()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(k, "sk-sluice-") || len(k) != KeyLen {
			t.Fatalf("bad key %q", k)
		}
		got, err := Parse(k)
		if err != nil || got != id {
			t.Fatalf("Parse(%q) = %q, %v; want %q", k, got, err, id)
		}
		if seen[id] {
			t.Fatalf("duplicate id %s", id)
		}
		seen[id] = true
	}
}

func TestParseRejects(t *testing.T) {
	k, _, _ := Generate()
	flip := []byte(k)
	// Change one secret character: the checksum must catch it.
	i := len(Prefix) + idLen + 5
	if flip[i] == 'a' {
		flip[i] = 'b'
	} else {
		flip[i] = 'a'
	}
	for _, bad := range []string{"", "sk-abc", k[:len(k)-1], k + "a", strings.ToUpper(k), string(flip),
		strings.Replace(k, "_", "-", 1), "sk-sluice-" + strings.Repeat("a", KeyLen-len(Prefix))} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	k, _, _ := Generate()
	f.Add(k)
	f.Add("sk-sluice-")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := Parse(s)
		if err != nil {
			return
		}
		if len(id) != idLen || !strings.HasPrefix(s, Prefix+id+"_") {
			t.Fatalf("Parse(%q) = %q", s, id)
		}
		if checksum(s[:len(s)-checkLen]) != s[len(s)-checkLen:] {
			t.Fatalf("accepted bad checksum %q", s)
		}
	})
}

// memKeys is a KeyStore for tests, counting lookups.
type memKeys struct {
	mu      sync.Mutex
	keys    map[string]sluice.Key
	lookups int
}

func (m *memKeys) CreateKey(_ context.Context, k sluice.Key) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keys[k.ID] = k
	return nil
}
func (m *memKeys) Key(_ context.Context, id string) (sluice.Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lookups++
	k, ok := m.keys[id]
	if !ok {
		return k, sluice.ErrNotFound
	}
	return k, nil
}
func (m *memKeys) Keys(context.Context) ([]sluice.Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []sluice.Key
	for _, k := range m.keys {
		out = append(out, k)
	}
	return out, nil
}
func (m *memKeys) RevokeKey(_ context.Context, id string, t time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	k, ok := m.keys[id]
	if !ok {
		return sluice.ErrNotFound
	}
	k.RevokedAt = t
	m.keys[id] = k
	return nil
}

func TestAuthenticator(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	st := &memKeys{keys: map[string]sluice.Key{}}
	secret, k, err := NewKey("team-a", "k", false, []string{"sim-chat"}, now.Add(time.Hour), now)
	if err != nil {
		t.Fatal(err)
	}
	st.CreateKey(ctx, k)
	clock := now
	a, err := New(ctx, st, Options{Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	got, err := a.Authenticate(ctx, secret)
	if err != nil || got.Team != "team-a" || !got.MayUse("sim-chat") || got.MayUse("other") {
		t.Fatalf("Authenticate = %+v, %v", got, err)
	}
	// A key created after the last refresh is found on first sight, and
	// stays found without another store lookup.
	s2, k2, _ := NewKey("team-b", "", false, nil, time.Time{}, now)
	st.CreateKey(ctx, k2)
	for i := 0; i < 3; i++ {
		if _, err := a.Authenticate(ctx, s2); err != nil {
			t.Fatalf("new key: %v", err)
		}
	}
	if st.lookups != 1 {
		t.Fatalf("store lookups = %d, want 1", st.lookups)
	}
	// Unknown well-formed ids hit the store once until the next refresh.
	s3, _, _ := Generate()
	for i := 0; i < 5; i++ {
		if _, err := a.Authenticate(ctx, s3); err != ErrUnauthenticated {
			t.Fatalf("unknown key: %v", err)
		}
	}
	if st.lookups != 2 {
		t.Fatalf("store lookups = %d, want 2", st.lookups)
	}
	// A right id with a wrong secret fails; so does a malformed key.
	wrong := []byte(secret)
	wrong[len(Prefix)+idLen+1] ^= 1
	if _, err := a.Authenticate(ctx, Prefix+k.ID+"_"+strings.Repeat("a", secretLen)+checksum(Prefix+k.ID+"_"+strings.Repeat("a", secretLen))); err != ErrUnauthenticated {
		t.Fatalf("wrong secret: %v", err)
	}
	if _, err := a.Authenticate(ctx, string(wrong)); err != ErrUnauthenticated {
		t.Fatalf("corrupted key: %v", err)
	}
	// Expiry.
	clock = now.Add(2 * time.Hour)
	if _, err := a.Authenticate(ctx, secret); err != ErrUnauthenticated {
		t.Fatalf("expired key accepted: %v", err)
	}
	clock = now
	// Revocation takes effect at the next refresh.
	st.RevokeKey(ctx, k.ID, now)
	if err := a.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(ctx, secret); err != ErrUnauthenticated {
		t.Fatalf("revoked key accepted: %v", err)
	}
}

// TestConcurrentFirstSight: many requests with a key created after the
// last refresh all succeed, with one store lookup between them.
func TestConcurrentFirstSight(t *testing.T) {
	ctx := context.Background()
	st := &memKeys{keys: map[string]sluice.Key{}}
	a, err := New(ctx, st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	secret, k, _ := NewKey("t", "", false, nil, time.Time{}, time.Now())
	st.CreateKey(ctx, k)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := a.Authenticate(ctx, secret); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent first use refused: %v", err)
	}
	if st.lookups != 1 {
		t.Fatalf("store lookups = %d, want 1", st.lookups)
	}
}

package server_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/auth"
)

type teamJSON struct {
	Name        string    `json:"name"`
	Description string    `json:"description"`
	ClassFloor  string    `json:"class_floor"`
	ActiveKeys  int       `json:"active_keys"`
	CreatedAt   time.Time `json:"created_at"`
}

func TestAdminTeams(t *testing.T) {
	base, userKey, srv := startGateway(t, `
ledger: {dsn: LEDGER}
upstreams: [{name: sim, type: simulator}]
endpoints: [{name: sim-chat, upstream: sim}]
`)
	ctx := context.Background()
	adminSecret, ak, _ := auth.NewKey("ops", "admin", true, nil, time.Time{}, time.Now())
	if err := srv.Store().CreateKey(ctx, ak); err != nil {
		t.Fatal(err)
	}
	if code, _ := adminDo(t, "GET", base+"/admin/v1/teams", userKey, ""); code != 403 {
		t.Fatalf("user key on the teams API: %d", code)
	}

	// Teams the keys created: "t" (startGateway's key) and "ops".
	code, body := adminDo(t, "GET", base+"/admin/v1/teams", adminSecret, "")
	var list struct{ Teams []teamJSON }
	if err := json.Unmarshal([]byte(body), &list); code != 200 || err != nil {
		t.Fatalf("list: %d %s", code, body)
	}
	if len(list.Teams) != 2 || list.Teams[0].Name != "ops" || list.Teams[1].Name != "t" || list.Teams[1].ActiveKeys != 1 {
		t.Fatalf("teams = %+v, want ops and t with one active key each", list.Teams)
	}

	code, body = adminDo(t, "POST", base+"/admin/v1/teams", adminSecret, `{"name":"finance","description":"Money people","class_floor":"internal"}`)
	var created teamJSON
	if err := json.Unmarshal([]byte(body), &created); code != 201 || err != nil {
		t.Fatalf("create: %d %s", code, body)
	}
	if created.Name != "finance" || created.Description != "Money people" || created.ClassFloor != "internal" || created.CreatedAt.IsZero() {
		t.Fatalf("created = %+v", created)
	}
	for _, c := range []struct {
		body string
		code int
	}{
		{`{"name":"finance"}`, 409},
		{`{"name":""}`, 400},
		{`{"name":"a/b"}`, 400},
		{`{"name":"x","colour":"red"}`, 400},
		{`not json`, 400},
	} {
		if code, body := adminDo(t, "POST", base+"/admin/v1/teams", adminSecret, c.body); code != c.code || !strings.Contains(body, `"error"`) {
			t.Errorf("create %s: %d %s, want %d", c.body, code, body, c.code)
		}
	}

	// A key for the team; the team cannot go while it is active.
	code, body = adminDo(t, "POST", base+"/admin/v1/keys", adminSecret, `{"team":"finance","name":"etl"}`)
	var key struct{ ID string }
	if err := json.Unmarshal([]byte(body), &key); code != 201 || err != nil {
		t.Fatalf("create key: %d %s", code, body)
	}
	code, body = adminDo(t, "GET", base+"/admin/v1/teams/finance", adminSecret, "")
	var got teamJSON
	if err := json.Unmarshal([]byte(body), &got); code != 200 || err != nil || got.ActiveKeys != 1 || got.Description != "Money people" {
		t.Fatalf("get: %d %s", code, body)
	}
	if code, body := adminDo(t, "DELETE", base+"/admin/v1/teams/finance", adminSecret, ""); code != 409 ||
		!strings.Contains(body, "team_in_use") || !strings.Contains(body, key.ID) {
		t.Fatalf("delete with an active key: %d %s", code, body)
	}
	if code, body := adminDo(t, "DELETE", base+"/admin/v1/keys/"+key.ID, adminSecret, ""); code != 200 {
		t.Fatalf("revoke: %d %s", code, body)
	}
	if code, body := adminDo(t, "DELETE", base+"/admin/v1/teams/finance", adminSecret, ""); code != 200 || !strings.Contains(body, `"finance"`) {
		t.Fatalf("delete: %d %s", code, body)
	}
	for _, m := range []string{"GET", "DELETE"} {
		if code, _ := adminDo(t, m, base+"/admin/v1/teams/finance", adminSecret, ""); code != 404 {
			t.Errorf("%s a deleted team: %d, want 404", m, code)
		}
	}
	// A key for a team that does not exist creates it.
	if code, body := adminDo(t, "POST", base+"/admin/v1/keys", adminSecret, `{"team":"newcomers"}`); code != 201 {
		t.Fatalf("create key: %d %s", code, body)
	}
	if code, body := adminDo(t, "GET", base+"/admin/v1/teams/newcomers", adminSecret, ""); code != 200 || !strings.Contains(body, `"active_keys": 1`) {
		t.Fatalf("team created with its key: %d %s", code, body)
	}
}

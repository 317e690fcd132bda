package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/auth"
)

// TestStoredTeamFloor: a team's class floor kept in the store raises every
// request made with the team's keys, once the gateway's team cache
// refreshes (every 2 s).
func TestStoredTeamFloor(t *testing.T) {
	base, _, srv := startGateway(t, `
ledger: {dsn: LEDGER}
upstreams: [{name: sim, type: simulator}]
endpoints: [{name: sim-chat, upstream: sim}]
`)
	ctx := context.Background()
	adminSecret, ak, _ := auth.NewKey("ops", "admin", true, nil, time.Time{}, time.Now())
	if err := srv.Store().CreateKey(ctx, ak); err != nil {
		t.Fatal(err)
	}
	if code, body := adminDo(t, "POST", base+"/admin/v1/teams", adminSecret, `{"name":"legal","class_floor":"restricted"}`); code != 201 {
		t.Fatalf("create team: %d %s", code, body)
	}
	secret, k, _ := auth.NewKey("legal", "", false, nil, time.Time{}, time.Now())
	if err := srv.Store().CreateKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	body := `{"model":"sim-chat","messages":[{"role":"user","content":"the weather is nice"}]}`
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, _ := http.NewRequest("POST", base+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if got := resp.Header.Get("X-Sluice-Data-Class"); got == "restricted" {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("class %q after 10 s; the stored team floor restricted never applied", got)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/auth"
)

func adminDo(t *testing.T, method, url, key, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAdminAPI(t *testing.T) {
	base, userKey, srv := startGateway(t, `
ledger: {dsn: LEDGER}
upstreams: [{name: sim, type: simulator}]
endpoints:
  - {name: sim-chat, upstream: sim, price: {input_per_1m: "1", output_per_1m: "2"}}
`)
	ctx := context.Background()
	adminSecret, ak, _ := auth.NewKey("ops", "admin", true, nil, time.Time{}, time.Now())
	if err := srv.Store().CreateKey(ctx, ak); err != nil {
		t.Fatal(err)
	}
	// Non-admin keys are refused; missing keys get 401.
	if code, _ := adminDo(t, "GET", base+"/admin/v1/keys", userKey, ""); code != 403 {
		t.Fatalf("user key on admin API: %d", code)
	}
	if code, _ := adminDo(t, "GET", base+"/admin/v1/keys", "", ""); code != 401 {
		t.Fatalf("no key on admin API: %d", code)
	}
	// Create a key for team finance; it works at once on the data plane.
	code, body := adminDo(t, "POST", base+"/admin/v1/keys", adminSecret, `{"team":"finance","name":"etl","endpoints":["sim-chat"]}`)
	if code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	var created struct{ ID, Secret, Team string }
	json.Unmarshal([]byte(body), &created)
	if created.Team != "finance" || !strings.HasPrefix(created.Secret, "sk-sluice-") {
		t.Fatalf("created = %+v", created)
	}
	for i := 0; i < 2; i++ {
		if resp, b := post(t, base+"/v1/chat/completions", created.Secret, `{"model":"sim-chat","messages":[{"role":"user","content":"hello there"}]}`); resp.StatusCode != 200 {
			t.Fatalf("new key: %d %s", resp.StatusCode, b)
		}
	}
	// Bad input answers 400 in the error shape.
	if code, body := adminDo(t, "POST", base+"/admin/v1/keys", adminSecret, `{"team":"x","endpoints":["nope"]}`); code != 400 || !strings.Contains(body, `"error"`) {
		t.Fatalf("bad endpoint: %d %s", code, body)
	}
	if code, _ := adminDo(t, "POST", base+"/admin/v1/keys", adminSecret, `{"team":"x","colour":"red"}`); code != 400 {
		t.Fatalf("unknown field: %d", code)
	}
	// Usage by team matches what was metered.
	code, body = adminDo(t, "GET", base+"/admin/v1/usage?by=team,endpoint", adminSecret, "")
	if code != 200 {
		t.Fatalf("usage: %d %s", code, body)
	}
	var rep struct {
		Rows []struct {
			Group      map[string]string
			Requests   int64
			CostMicros int64 `json:"cost_micros"`
		}
	}
	json.Unmarshal([]byte(body), &rep)
	if len(rep.Rows) != 1 || rep.Rows[0].Group["team"] != "finance" || rep.Rows[0].Requests != 2 || rep.Rows[0].CostMicros <= 0 {
		t.Fatalf("usage rows = %+v", rep.Rows)
	}
	if code, body := adminDo(t, "GET", base+"/admin/v1/usage?by=team&format=csv", adminSecret, ""); code != 200 || !strings.HasPrefix(body, "team,requests") {
		t.Fatalf("csv: %d %q", code, body)
	}
	// Revoke: the key stops working at once on this replica.
	if code, body := adminDo(t, "DELETE", base+"/admin/v1/keys/"+created.ID, adminSecret, ""); code != 200 || !strings.Contains(body, `"revoked"`) {
		t.Fatalf("revoke: %d %s", code, body)
	}
	if resp, _ := post(t, base+"/v1/chat/completions", created.Secret, `{"model":"sim-chat","messages":[]}`); resp.StatusCode != 401 {
		t.Fatalf("revoked key: %d", resp.StatusCode)
	}
	if code, _ := adminDo(t, "DELETE", base+"/admin/v1/keys/nosuchkey", adminSecret, ""); code != 404 {
		t.Fatalf("revoke unknown: %d", code)
	}
}

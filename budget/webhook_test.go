package budget_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/budget"
)

var testAlert = sluice.BudgetAlert{
	BudgetID: "ml-monthly", Scope: sluice.ScopeTeam, Subject: "ml", Period: sluice.PeriodMonth,
	PeriodStart: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), ResetAt: time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC),
	Threshold: 80, LimitMicros: 100_000_000, SettledMicros: 80_500_001, Hard: true,
	FiredAt: time.Date(2026, 3, 17, 12, 30, 0, 0, time.UTC),
}

// receiver is a webhook endpoint answering with the given statuses in
// turn (then 200) and keeping what it received.
type receiver struct {
	mu       sync.Mutex
	statuses []int
	got      []*http.Request
	bodies   [][]byte
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.got = append(rc.got, r)
	rc.bodies = append(rc.bodies, body)
	status := http.StatusOK
	if len(rc.statuses) > 0 {
		status, rc.statuses = rc.statuses[0], rc.statuses[1:]
	}
	w.WriteHeader(status)
}

func (rc *receiver) requests() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.got)
}

// waits records the backoffs a Webhook asked for, without waiting.
type waits struct {
	mu sync.Mutex
	ds []time.Duration
}

func (w *waits) Wait(ctx context.Context, d time.Duration) error {
	w.mu.Lock()
	w.ds = append(w.ds, d)
	w.mu.Unlock()
	return ctx.Err()
}

func TestWebhookPayload(t *testing.T) {
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	wh := &budget.Webhook{URL: srv.URL + "/hooks/budget", Header: http.Header{"Authorization": {"Bearer s3cret"}}}
	if err := wh.Send(context.Background(), testAlert); err != nil {
		t.Fatal(err)
	}
	if rc.requests() != 1 {
		t.Fatalf("%d requests, want 1", rc.requests())
	}
	r := rc.got[0]
	if r.Method != http.MethodPost || r.URL.Path != "/hooks/budget" || r.Header.Get("Content-Type") != "application/json" ||
		r.Header.Get("Authorization") != "Bearer s3cret" || r.Header.Get("Idempotency-Key") != "ml-monthly/1772323200/80" {
		t.Errorf("request %s %s %v", r.Method, r.URL, r.Header)
	}
	var got map[string]any
	if err := json.Unmarshal(rc.bodies[0], &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"type": "budget.threshold", "budget_id": "ml-monthly", "scope": "team", "subject": "ml", "period": "month",
		"period_start": "2026-03-01T00:00:00Z", "reset_at": "2026-04-01T00:00:00Z", "threshold_percent": 80.0,
		"limit_micros": 1e8, "settled_micros": 80500001.0, "limit_usd": "100.000000", "settled_usd": "80.500001",
		"hard": true, "fired_at": "2026-03-17T12:30:00Z",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("payload has %d fields, want %d: %s", len(got), len(want), rc.bodies[0])
	}

	life := testAlert
	life.Period, life.ResetAt = sluice.PeriodLifetime, time.Time{}
	if p := budget.Payload(life); p.ResetAt != nil {
		t.Errorf("lifetime budget reset_at = %v, want null", p.ResetAt)
	}
}

func TestWebhookRetries(t *testing.T) {
	for _, tc := range []struct {
		name     string
		statuses []int
		attempts int
		ok       bool
		tries    int
		waits    []time.Duration
	}{
		{"first try", nil, 0, true, 1, nil},
		{"after 503 and 429", []int{503, 429}, 0, true, 3, []time.Duration{time.Second, 2 * time.Second}},
		{"gives up", []int{500, 502, 500, 500}, 3, false, 3, []time.Duration{time.Second, 2 * time.Second}},
		{"bounded by Attempts", []int{500, 500}, 2, false, 2, []time.Duration{time.Second}},
		{"no retry on 400", []int{400}, 5, false, 1, nil},
		{"no retry on 401", []int{401}, 5, false, 1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := &receiver{statuses: slices.Clone(tc.statuses)}
			srv := httptest.NewServer(rc)
			defer srv.Close()
			w := &waits{}
			wh := &budget.Webhook{URL: srv.URL, Attempts: tc.attempts, Wait: w.Wait}
			err := wh.Send(context.Background(), testAlert)
			if (err == nil) != tc.ok {
				t.Errorf("Send = %v, want ok=%v", err, tc.ok)
			}
			if rc.requests() != tc.tries {
				t.Errorf("%d requests, want %d", rc.requests(), tc.tries)
			}
			if !slices.Equal(w.ds, tc.waits) {
				t.Errorf("waited %v, want %v", w.ds, tc.waits)
			}
		})
	}
}

func TestWebhookStopsWithContext(t *testing.T) {
	rc := &receiver{statuses: []int{503, 503, 503}}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	wh := &budget.Webhook{URL: srv.URL, Attempts: 3, Wait: func(ctx context.Context, _ time.Duration) error {
		cancel()
		return ctx.Err()
	}}
	if err := wh.Send(ctx, testAlert); !errors.Is(err, context.Canceled) {
		t.Errorf("Send = %v, want context.Canceled", err)
	}
	if rc.requests() != 1 {
		t.Errorf("%d requests after cancel, want 1", rc.requests())
	}
}

func TestWebhookFollowsNoRedirect(t *testing.T) {
	elsewhere := &receiver{}
	other := httptest.NewServer(elsewhere)
	defer other.Close()
	srv := httptest.NewServer(http.RedirectHandler(other.URL, http.StatusTemporaryRedirect))
	defer srv.Close()
	wh := &budget.Webhook{URL: srv.URL, Wait: (&waits{}).Wait}
	if err := wh.Send(context.Background(), testAlert); err == nil {
		t.Error("a redirect counted as delivery")
	}
	if elsewhere.requests() != 0 {
		t.Error("the redirect was followed")
	}
}

func TestWebhookAsAlertReceiver(t *testing.T) {
	st := openSQLite(t, t.TempDir()+"/ledger.db")
	createBudget(t, st, sluice.Budget{ID: "team", Scope: sluice.ScopeTeam, Subject: "ml", Period: sluice.PeriodDay,
		LimitMicros: 100, AlertThresholds: []int{50}})
	insert(t, st, record("a", t0, alice, 50))
	rc := &receiver{statuses: []int{500, 500}}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	clk := &clock{now: t0}
	wh := &budget.Webhook{URL: srv.URL, Attempts: 2, Wait: (&waits{}).Wait}
	m := budget.New(st, budget.Options{OnAlert: wh.Send, AlertLease: time.Minute, Now: clk.Now, Logger: quiet})
	if n, err := m.DeliverAlerts(context.Background()); err != nil || n != 0 {
		t.Fatalf("DeliverAlerts to a failing receiver = %d, %v", n, err)
	}
	clk.Add(time.Minute)
	if n, err := m.DeliverAlerts(context.Background()); err != nil || n != 1 {
		t.Fatalf("DeliverAlerts after the lease = %d, %v; want 1", n, err)
	}
	if rc.requests() != 3 {
		t.Errorf("%d POSTs, want 3 (two failed tries, then one)", rc.requests())
	}
	clk.Add(time.Hour)
	if n, err := m.DeliverAlerts(context.Background()); err != nil || n != 0 {
		t.Errorf("delivered again: %d, %v", n, err)
	}
}

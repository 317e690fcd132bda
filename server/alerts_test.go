package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestBudgetAlertsReachWebhookOnce: a soft budget's thresholds fire once
// per period each, as a webhook POST (and a log line and a metric), while
// requests keep being admitted.
func TestBudgetAlertsReachWebhookOnce(t *testing.T) {
	var mu sync.Mutex
	got := map[int]int{} // threshold -> deliveries
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var p struct {
			Type      string `json:"type"`
			BudgetID  string `json:"budget_id"`
			Threshold int    `json:"threshold_percent"`
		}
		json.Unmarshal(b, &p)
		mu.Lock()
		got[p.Threshold]++
		mu.Unlock()
	}))
	defer hook.Close()
	per := perRequestMicros(t)
	base, key, srv := startGateway(t, strings.Replace(budgetYAML, "endpoints:", "budgets: {webhook_url: \""+hook.URL+"\", reconcile_interval: 100ms}\nendpoints:", 1))
	b := teamBudget(4 * per)
	b.Hard = false
	b.AlertThresholds = []int{50, 100}
	if err := srv.Store().CreateBudget(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if err := srv.RefreshBudgets(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Six requests: past 50% after two, past 100% after four; a soft
	// budget never refuses.
	for i := 0; i < 6; i++ {
		if resp, body := post(t, base+"/v1/chat/completions", key, budgetBody); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, body)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		done := got[50] >= 1 && got[100] >= 1
		mu.Unlock()
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Give a wrongly repeated delivery the chance to happen.
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if got[50] != 1 || got[100] != 1 || len(got) != 2 {
		t.Fatalf("webhook deliveries by threshold = %v, want one each for 50 and 100", got)
	}
	if n := counter(t, srv, "sluice_budget_alerts_total", "threshold", "100"); n != 1 {
		t.Fatalf("sluice_budget_alerts_total{threshold=100} = %v", n)
	}
	st, err := srv.Store().BudgetStatus(context.Background(), b.ID, time.Now())
	if err != nil || st.SettledMicros != 6*per {
		t.Fatalf("settled %d, want %d (%v)", st.SettledMicros, 6*per, err)
	}
}

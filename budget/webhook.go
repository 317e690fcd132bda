package budget

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/sluice-gateway/sluice"
)

// Webhook POSTs alerts as JSON to a URL the operator configured. Its Send
// fits Options.OnAlert.
type Webhook struct {
	URL string
	// Header is added to every request, e.g. an Authorization header the
	// receiver checks.
	Header http.Header
	// Client sends the requests. Nil means a client with a 10 s timeout
	// that uses no proxy from the environment and follows no redirects.
	Client *http.Client
	// Attempts bounds the tries per alert, the first included. Zero
	// means 3.
	Attempts int
	// Backoff is the wait before the second try; it doubles before each
	// further one. Zero means one second.
	Backoff time.Duration
	// Wait waits d or until ctx ends. Nil means a timer; tests replace it.
	Wait func(ctx context.Context, d time.Duration) error
}

// WebhookPayload is the JSON body of a webhook POST. Money is integer
// micro-dollars, with a decimal USD string beside it for people.
type WebhookPayload struct {
	Type             string     `json:"type"` // always "budget.threshold"
	BudgetID         string     `json:"budget_id"`
	Scope            string     `json:"scope"`
	Subject          string     `json:"subject"`
	Period           string     `json:"period"`
	PeriodStart      time.Time  `json:"period_start"`
	ResetAt          *time.Time `json:"reset_at"` // null for a lifetime budget
	ThresholdPercent int        `json:"threshold_percent"`
	LimitMicros      int64      `json:"limit_micros"`
	SettledMicros    int64      `json:"settled_micros"`
	Limit            string     `json:"limit_usd"`
	Settled          string     `json:"settled_usd"`
	Hard             bool       `json:"hard"`
	FiredAt          time.Time  `json:"fired_at"`
}

// Payload returns the webhook body for a.
func Payload(a sluice.BudgetAlert) WebhookPayload {
	p := WebhookPayload{
		Type: "budget.threshold", BudgetID: a.BudgetID, Scope: string(a.Scope), Subject: a.Subject,
		Period: string(a.Period), PeriodStart: a.PeriodStart.UTC(), ThresholdPercent: a.Threshold,
		LimitMicros: a.LimitMicros, SettledMicros: a.SettledMicros,
		Limit: usd(a.LimitMicros), Settled: usd(a.SettledMicros), Hard: a.Hard, FiredAt: a.FiredAt.UTC(),
	}
	if !a.ResetAt.IsZero() {
		r := a.ResetAt.UTC()
		p.ResetAt = &r
	}
	return p
}

// usd formats micro-dollars as a plain decimal: 1500000 → "1.500000".
func usd(micros int64) string {
	sign := ""
	u := uint64(micros)
	if micros < 0 {
		sign, u = "-", uint64(-micros)
	}
	return fmt.Sprintf("%s%d.%06d", sign, u/1_000_000, u%1_000_000)
}

var defaultWebhookClient = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{Proxy: nil, ForceAttemptHTTP2: true, MaxIdleConns: 4, IdleConnTimeout: time.Minute},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// Send POSTs a's payload, retrying network errors, 429 and 5xx responses
// up to Attempts tries in all. Any 2xx is success; another status fails
// at once. Each POST carries an Idempotency-Key header that is the same
// for every delivery of one alert.
func (w *Webhook) Send(ctx context.Context, a sluice.BudgetAlert) error {
	body, err := json.Marshal(Payload(a))
	if err != nil {
		return fmt.Errorf("budget webhook: %w", err)
	}
	key := a.BudgetID + "/" + strconv.FormatInt(a.PeriodStart.Unix(), 10) + "/" + strconv.Itoa(a.Threshold)
	attempts, backoff := w.Attempts, w.Backoff
	if attempts <= 0 {
		attempts = 3
	}
	if backoff <= 0 {
		backoff = time.Second
	}
	wait := w.Wait
	if wait == nil {
		wait = sleep
	}
	var errs []error
	for try := 1; ; try++ {
		retry, err := w.post(ctx, body, key)
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("attempt %d: %w", try, err))
		if !retry || try == attempts {
			break
		}
		if err := wait(ctx, backoff); err != nil {
			errs = append(errs, err)
			break
		}
		backoff *= 2
	}
	return fmt.Errorf("budget webhook: alert %s not delivered: %w", key, errors.Join(errs...))
}

// post sends one request and says whether a failure is worth retrying.
func (w *Webhook) post(ctx context.Context, body []byte, key string) (retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	for k, vs := range w.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	client := w.Client
	if client == nil {
		client = defaultWebhookClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return ctx.Err() == nil, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return false, nil
	}
	return resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500,
		fmt.Errorf("status %s", resp.Status)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

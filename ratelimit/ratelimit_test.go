package ratelimit

import (
	"errors"
	"net/http"
	"testing"
	"time"
)

func TestWriteHeaders(t *testing.T) {
	h := http.Header{}
	Decision{
		Allowed:       true,
		LimitRequests: 500, RemainingRequests: 499, ResetRequests: 120 * time.Millisecond,
		LimitTokens: 30000, RemainingTokens: 29000, ResetTokens: 6*time.Minute + 1500*time.Millisecond,
	}.WriteHeaders(h)
	want := map[string]string{
		"x-ratelimit-limit-requests":     "500",
		"x-ratelimit-remaining-requests": "499",
		"x-ratelimit-reset-requests":     "120ms",
		"x-ratelimit-limit-tokens":       "30000",
		"x-ratelimit-remaining-tokens":   "29000",
		"x-ratelimit-reset-tokens":       "6m1.5s",
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if len(h) != len(want) {
		t.Errorf("headers %v, want exactly %v", h, want)
	}

	h = http.Header{}
	Decision{Limit: "team:x/tpm", RetryAfter: 1001 * time.Millisecond, LimitTokens: 10, ResetTokens: time.Minute}.WriteHeaders(h)
	if h.Get("Retry-After") != "2" || h.Get("Retry-After-Ms") != "1001" || h.Get("X-Ratelimit-Remaining-Tokens") != "0" {
		t.Errorf("refusal headers: %v", h)
	}
	if h.Get("X-Ratelimit-Limit-Requests") != "" {
		t.Errorf("request headers written without a request limit: %v", h)
	}

	h = http.Header{}
	Decision{TooLarge: true, Limit: "key:a/tpm"}.WriteHeaders(h)
	if h.Get("Retry-After") != "" {
		t.Errorf("Retry-After on a request that can never fit: %v", h)
	}
}

func TestValidate(t *testing.T) {
	if err := Validate([]Request{{Key: "a"}, {Key: "b", RPM: MaxLimit, TPM: MaxLimit, Tokens: MaxLimit}}); err != nil {
		t.Errorf("valid requests: %v", err)
	}
	for _, r := range []Request{{}, {Key: "a", RPM: -1}, {Key: "a", Tokens: MaxLimit + 1}} {
		if err := Validate([]Request{r}); !errors.Is(err, ErrInvalid) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalid", r, err)
		}
	}
	if err := ValidateActual(-1); !errors.Is(err, ErrInvalid) {
		t.Errorf("ValidateActual(-1) = %v", err)
	}
}

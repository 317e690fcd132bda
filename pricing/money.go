// Package pricing turns token counts into money.
//
// Prices ship inside the binary as a versioned catalog (catalog.yaml,
// embedded with go:embed) and are never fetched at run time, so an
// air-gapped gateway prices requests exactly as a connected one does.
// Operators may override or add prices from their configuration; the
// resulting catalog carries the operator's version string, which the
// ledger records next to every cost.
//
// Money is integer micro-dollars (1 USD = 1,000,000) end to end. Prices are
// held as micro-dollars per million tokens, so the smallest representable
// price is $0.000001 per 1M tokens. Decimal strings are parsed exactly;
// nothing in this package uses floating point.
//
//	c := pricing.Default()
//	p, ok := c.Lookup("openai", "gpt-4o-2024-08-06") // priced as gpt-4o
//	if ok {
//		cost := p.Cost(usage.PromptTokens, usage.CompletionTokens) // micro-dollars
//		rec.CostMicros, rec.PriceVersion = cost, c.Version()
//	}
package pricing

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
)

// Micros is an amount of US dollars in micro-dollars (1 USD = 1,000,000).
type Micros int64

// String formats m as a decimal number of dollars with at least two and
// at most six decimal places and no trailing zeros beyond the second:
// 150000 → "0.15", 75000 → "0.075", 2500000 → "2.50".
func (m Micros) String() string { return formatScaled(int64(m)) }

// scale is the number of decimal places a micro-unit carries.
const scale = 6

// ErrInvalidAmount is wrapped by every error ParseUSD returns.
var ErrInvalidAmount = errors.New("invalid amount")

// ParseUSD parses a non-negative decimal dollar amount such as "0.15",
// "2.50" or "10" exactly into micro-dollars. It accepts at most six decimal
// places (further trailing zeros are allowed) and rejects signs, exponent
// forms ("1e-3"), NaN and infinities, thousands separators, currency
// symbols and surrounding space, each with a message saying why.
//
// The same function parses per-1M-token prices: "0.075" (USD per 1M
// tokens) is 75,000 micro-dollars per 1M tokens.
func ParseUSD(s string) (Micros, error) {
	v, err := parseScaled(s)
	if err != nil {
		return 0, err
	}
	return Micros(v), nil
}

// parseScaled parses a non-negative decimal with up to six places into
// millionths. It is shared by dollar and DBU amounts.
func parseScaled(s string) (int64, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %q: %s", ErrInvalidAmount, s, fmt.Sprintf(format, args...))
	}
	if s == "" {
		return 0, fmt.Errorf("%w: empty", ErrInvalidAmount)
	}
	switch strings.ToLower(strings.TrimLeft(s, "+-")) {
	case "nan", "inf", "infinity":
		return 0, bad("not a number")
	}
	switch s[0] {
	case '-':
		return 0, bad("negative amounts are not allowed")
	case '+':
		return 0, bad("write the amount without a sign")
	}
	if strings.ContainsAny(s, "eE") {
		return 0, bad("exponent form is not allowed; write the decimal in full")
	}
	intPart, fracPart, hasDot := strings.Cut(s, ".")
	if intPart == "" {
		return 0, bad("missing digits before the decimal point")
	}
	if hasDot && fracPart == "" {
		return 0, bad("missing digits after the decimal point")
	}
	for _, part := range []string{intPart, fracPart} {
		for _, r := range part {
			if r < '0' || r > '9' {
				return 0, bad("unexpected character %q; use digits and one decimal point", r)
			}
		}
	}
	if trimmed := strings.TrimRight(fracPart, "0"); len(trimmed) > scale {
		return 0, bad("more than %d decimal places", scale)
	} else {
		fracPart = trimmed
	}
	whole, err := strconv.ParseUint(intPart, 10, 64)
	if err != nil || whole > math.MaxInt64/1_000_000 {
		return 0, bad("too large")
	}
	var frac uint64
	if fracPart != "" {
		frac, _ = strconv.ParseUint(fracPart+strings.Repeat("0", scale-len(fracPart)), 10, 64)
	}
	v := whole*1_000_000 + frac
	if v > math.MaxInt64 {
		return 0, bad("too large")
	}
	return int64(v), nil
}

// formatScaled renders millionths as a decimal with 2 to 6 places.
func formatScaled(v int64) string {
	sign := ""
	u := uint64(v)
	if v < 0 {
		sign, u = "-", uint64(-(v+1))+1
	}
	frac := fmt.Sprintf("%06d", u%1_000_000)
	frac = strings.TrimRight(frac, "0")
	for len(frac) < 2 {
		frac += "0"
	}
	return sign + strconv.FormatUint(u/1_000_000, 10) + "." + frac
}

// Price is what one model costs, in micro-dollars per 1M tokens.
type Price struct {
	InputPer1M  int64 // micro-dollars per 1M prompt tokens
	OutputPer1M int64 // micro-dollars per 1M completion tokens
	// Source says where the price came from: "catalog <version>" for the
	// embedded catalog, "override <version>" for an operator's price.
	Source string
}

// Cost returns the cost in micro-dollars of promptTokens prompt and
// completionTokens completion tokens at p:
//
//	round_half_up((prompt×InputPer1M + completion×OutputPer1M) / 1,000,000)
//
// The sum is computed exactly in 128 bits and rounded once, on the total,
// so splitting a bill into input and output never adds a rounding error
// of its own. Negative token counts and negative prices count as zero. A
// result beyond math.MaxInt64 micro-dollars (about 9.2 trillion dollars)
// saturates at math.MaxInt64 instead of wrapping.
func (p Price) Cost(promptTokens, completionTokens int64) int64 {
	v, ok := dotRound(nonNeg(promptTokens), nonNeg(p.InputPer1M), nonNeg(completionTokens), nonNeg(p.OutputPer1M))
	if !ok {
		return math.MaxInt64
	}
	return v
}

func nonNeg(v int64) uint64 {
	if v < 0 {
		return 0
	}
	return uint64(v)
}

// dotRound returns round_half_up((a×x + b×y) / 1,000,000), computed exactly
// in 128 bits, and false if the result does not fit in an int64.
func dotRound(a, x, b, y uint64) (int64, bool) {
	hi1, lo1 := bits.Mul64(a, x)
	hi2, lo2 := bits.Mul64(b, y)
	// Callers pass values below 2^63, so each product is below 2^126 and
	// neither addition below overflows 128 bits.
	lo, carry := bits.Add64(lo1, lo2, 0)
	hi := hi1 + hi2 + carry
	lo, carry = bits.Add64(lo, 500_000, 0) // half the divisor: round half up
	hi += carry
	if hi >= 1_000_000 { // the quotient would not fit in 64 bits
		return 0, false
	}
	q, _ := bits.Div64(hi, lo, 1_000_000)
	if q > math.MaxInt64 {
		return 0, false
	}
	return int64(q), true
}

// mulScaled returns round_half_up(a×b / 1,000,000) for non-negative a and
// b, or false if it does not fit in an int64. It turns micro-DBU per 1M
// tokens and micro-dollars per DBU into micro-dollars per 1M tokens.
func mulScaled(a, b int64) (int64, bool) {
	return dotRound(nonNeg(a), nonNeg(b), 0, 0)
}

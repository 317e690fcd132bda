package pricing

import (
	"errors"
	"math"
	"math/big"
	"strings"
	"testing"
)

func TestParseUSD(t *testing.T) {
	good := []struct {
		in   string
		want Micros
	}{
		{"0", 0},
		{"0.15", 150_000},
		{"2.50", 2_500_000},
		{"10", 10_000_000},
		{"0.075", 75_000},
		{"0.000001", 1},
		{"0.1500000", 150_000}, // trailing zeros past six places are exact
		{"007.5", 7_500_000},
		{"9223372036854.775807", math.MaxInt64},
	}
	for _, tc := range good {
		got, err := ParseUSD(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseUSD(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}

	bad := []struct{ in, msg string }{
		{"", "empty"},
		{"-0.15", "negative"},
		{"+1", "without a sign"},
		{"NaN", "not a number"},
		{"inf", "not a number"},
		{"-Infinity", "not a number"},
		{"1e-3", "exponent"},
		{"1E3", "exponent"},
		{"0.0000001", "more than 6 decimal places"},
		{"1.2345678", "more than 6 decimal places"},
		{".5", "before the decimal point"},
		{"5.", "after the decimal point"},
		{"1,000", "unexpected character ','"},
		{"1_000", "unexpected character '_'"},
		{"$1", "unexpected character '$'"},
		{" 1", "unexpected character ' '"},
		{"1.2.3", "unexpected character '.'"},
		{"0x10", "unexpected character 'x'"},
		{"9223372036854.775808", "too large"},
		{"99999999999999999999999", "too large"},
	}
	for _, tc := range bad {
		got, err := ParseUSD(tc.in)
		if err == nil {
			t.Errorf("ParseUSD(%q) = %d, want an error containing %q", tc.in, got, tc.msg)
			continue
		}
		if !errors.Is(err, ErrInvalidAmount) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("ParseUSD(%q) error = %q; want ErrInvalidAmount containing %q", tc.in, err, tc.msg)
		}
	}
}

func TestMicrosString(t *testing.T) {
	for m, want := range map[Micros]string{
		0:             "0.00",
		150_000:       "0.15",
		75_000:        "0.075",
		2_500_000:     "2.50",
		1:             "0.000001",
		-150_000:      "-0.15",
		math.MaxInt64: "9223372036854.775807",
		math.MinInt64: "-9223372036854.775808",
	} {
		if got := m.String(); got != want {
			t.Errorf("Micros(%d).String() = %q, want %q", int64(m), got, want)
		}
		if m >= 0 {
			back, err := ParseUSD(m.String())
			if err != nil || back != m {
				t.Errorf("ParseUSD(%q) = %d, %v; want round trip to %d", m.String(), back, err, int64(m))
			}
		}
	}
}

func TestCost(t *testing.T) {
	gpt4oMini := Price{InputPer1M: 150_000, OutputPer1M: 600_000} // $0.15 / $0.60
	tests := []struct {
		name               string
		p                  Price
		prompt, completion int64
		want               int64
	}{
		{"zero", gpt4oMini, 0, 0, 0},
		{"one million each", gpt4oMini, 1_000_000, 1_000_000, 750_000},
		// 1000×0.15 + 500×0.60 = 450 micro$ exactly.
		{"exact", gpt4oMini, 1000, 500, 450},
		// 3 tokens at $0.15/1M = 0.45 micro$ → 0; at 0.5 it rounds up.
		{"below half rounds down", gpt4oMini, 3, 0, 0},
		{"half rounds up", Price{InputPer1M: 500_000}, 1, 0, 1},
		{"just below half", Price{InputPer1M: 499_999}, 1, 0, 0},
		// Rounded once on the total: 0.3 + 0.3 = 0.6 → 1 micro$, where
		// rounding each part first would give 0 + 0.
		{"rounded once on the total", Price{InputPer1M: 300_000, OutputPer1M: 300_000}, 1, 1, 1},
		{"negative tokens count as zero", gpt4oMini, -5, 1_000_000, 600_000},
		{"negative price counts as zero", Price{InputPer1M: -1, OutputPer1M: 1_000_000}, 10, 10, 10},
		// Products beyond 64 bits are still exact: 10^12 tokens × $60/1M = $60M.
		{"beyond 64-bit products", Price{OutputPer1M: 60_000_000}, 0, 1_000_000_000_000, 60_000_000_000_000},
		{"saturates", Price{InputPer1M: math.MaxInt64, OutputPer1M: math.MaxInt64}, math.MaxInt64, math.MaxInt64, math.MaxInt64},
		{"just fits", Price{InputPer1M: 1_000_000}, math.MaxInt64, 0, math.MaxInt64},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.Cost(tc.prompt, tc.completion); got != tc.want {
				t.Errorf("Cost(%d, %d) = %d, want %d", tc.prompt, tc.completion, got, tc.want)
			}
		})
	}
}

// TestCostMatchesBigArithmetic checks Cost against math/big over a spread of
// values, large ones included.
func TestCostMatchesBigArithmetic(t *testing.T) {
	vals := []int64{0, 1, 3, 499_999, 500_000, 999_999, 1_000_000, 123_456_789,
		1 << 31, 1<<40 + 7, 1 << 53, math.MaxInt64 / 3, math.MaxInt64 - 1, math.MaxInt64}
	million, half := big.NewInt(1_000_000), big.NewInt(500_000)
	maxInt := big.NewInt(math.MaxInt64)
	for _, a := range vals {
		for _, x := range vals {
			for _, b := range vals[:6] {
				for _, y := range vals[len(vals)-4:] {
					sum := new(big.Int).Mul(big.NewInt(a), big.NewInt(x))
					sum.Add(sum, new(big.Int).Mul(big.NewInt(b), big.NewInt(y)))
					sum.Add(sum, half).Div(sum, million)
					want := int64(math.MaxInt64)
					if sum.Cmp(maxInt) <= 0 {
						want = sum.Int64()
					}
					if got := (Price{InputPer1M: x, OutputPer1M: y}).Cost(a, b); got != want {
						t.Fatalf("Price{%d,%d}.Cost(%d,%d) = %d, want %d", x, y, a, b, got, want)
					}
				}
			}
		}
	}
}

func FuzzParseUSD(f *testing.F) {
	for _, s := range []string{"0.15", "10", "1e3", "-1", "0.0000001", "NaN", "9223372036854.775807"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseUSD(s)
		if err != nil {
			return
		}
		if m < 0 {
			t.Fatalf("ParseUSD(%q) = %d, negative", s, m)
		}
		back, err := ParseUSD(m.String())
		if err != nil || back != m {
			t.Fatalf("ParseUSD(%q) = %d; its String %q parses to %d, %v", s, m, m.String(), back, err)
		}
	})
}

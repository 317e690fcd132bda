package pricing

import (
	"bytes"
	"strings"
	"testing"
)

func TestDefaultCatalogIsValid(t *testing.T) {
	c := Default()
	if c.Version() != "2026-11-01" {
		t.Errorf("Version() = %q", c.Version())
	}
	if c.DBURate() != 70_000 {
		t.Errorf("DBURate() = %d, want 70000 ($0.07)", c.DBURate())
	}
	if Default() != c {
		t.Error("Default() parsed the catalog twice")
	}
	entries := c.Entries()
	if len(entries) < 30 {
		t.Fatalf("only %d entries", len(entries))
	}
	for _, e := range entries {
		name := e.Provider + "/" + e.Model
		switch e.Provider {
		case "openai", "azure", "databricks", "simulator":
		default:
			t.Errorf("%s: unknown provider", name)
		}
		if e.Price.InputPer1M < 0 || e.Price.OutputPer1M < 0 {
			t.Errorf("%s: negative price %+v", name, e.Price)
		}
		if e.Price.Source != "catalog 2026-11-01" {
			t.Errorf("%s: Source = %q", name, e.Price.Source)
		}
		embedding := strings.Contains(e.Model, "embedding") || strings.HasSuffix(e.Model, "-large-en")
		switch {
		case e.Provider == "simulator":
			if e.Price.InputPer1M != 0 || e.Price.OutputPer1M != 0 {
				t.Errorf("%s: the simulator must be free, got %+v", name, e.Price)
			}
		case embedding:
			if e.Price.InputPer1M == 0 || e.Price.OutputPer1M != 0 {
				t.Errorf("%s: an embedding model should price input only, got %+v", name, e.Price)
			}
		default:
			// Output tokens cost more than input tokens for every chat model.
			if e.Price.InputPer1M == 0 || e.Price.OutputPer1M <= e.Price.InputPer1M {
				t.Errorf("%s: implausible chat price %+v", name, e.Price)
			}
		}
		if e.DBU != (e.Provider == "databricks") {
			t.Errorf("%s: DBU = %v", name, e.DBU)
		}
		if e.DBU {
			if e.InputDBUPer1M == 0 {
				t.Errorf("%s: no input DBU figure", name)
			}
			if want, _ := mulScaled(e.InputDBUPer1M, c.DBURate()); e.Price.InputPer1M != want {
				t.Errorf("%s: input price %d, want %d from DBUs", name, e.Price.InputPer1M, want)
			}
		}
		// Every entry is found under its own name and aliases.
		for _, n := range append([]string{e.Model}, e.Aliases...) {
			if p, ok := c.Lookup(e.Provider, n); !ok || p != e.Price {
				t.Errorf("Lookup(%q, %q) = %+v, %v; want %+v", e.Provider, n, p, ok, e.Price)
			}
		}
	}

	// The models the gateway is expected to price out of the box.
	required := map[string][]string{
		"openai": {"gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o1", "o3",
			"o3-mini", "o4-mini", "gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-3.5-turbo",
			"text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002"},
		"azure": {"gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o1", "o3",
			"o3-mini", "o4-mini", "gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-35-turbo",
			"text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002"},
		"databricks": {"databricks-meta-llama-3-3-70b-instruct", "databricks-meta-llama-3-1-8b-instruct",
			"databricks-gte-large-en", "databricks-bge-large-en"},
		"simulator": {"anything-at-all"},
	}
	for provider, models := range required {
		for _, m := range models {
			if _, ok := c.Lookup(provider, m); !ok {
				t.Errorf("Lookup(%q, %q): not priced", provider, m)
			}
		}
	}
}

func TestLookup(t *testing.T) {
	c := Default()
	usd := func(s string) int64 {
		m, err := ParseUSD(s)
		if err != nil {
			t.Fatal(err)
		}
		return int64(m)
	}
	tests := []struct {
		provider, model string
		wantIn, wantOut string // USD per 1M; empty wantIn means not found
	}{
		{"openai", "gpt-4o", "2.50", "10.00"},
		{"OpenAI", "GPT-4o", "2.50", "10.00"},                       // case-insensitive
		{"openai", "gpt-5-chat-latest", "1.25", "10.00"},            // alias
		{"openai", "gpt-4o-2024-08-06", "2.50", "10.00"},            // dated suffix stripped
		{"openai", "gpt-4o-2024-05-13", "5.00", "15.00"},            // exact snapshot wins over stripping
		{"openai", "gpt-4o-mini-2024-07-18", "0.15", "0.60"},        // stripped to gpt-4o-mini, not gpt-4o
		{"openai", "gpt-3.5-turbo-0125", "0.50", "1.50"},            // -MMDD suffix
		{"openai", "gpt-5-nano-2025-08-07", "0.05", "0.40"},         //
		{"azure", "gpt-3.5-turbo", "0.50", "1.50"},                  // Azure alias of gpt-35-turbo
		{"azure", "gpt-35-turbo-0125", "0.50", "1.50"},              //
		{"simulator", "gpt-4o", "0", "0"},                           // wildcard
		{"openai", "gpt-4o-2024-08", "", ""},                        // not a date suffix
		{"openai", "gpt-4o-20240806", "", ""},                       // 8 digits are not a snapshot suffix
		{"openai", "gpt-4", "", ""},                                 // not in the catalog
		{"openai", "-2024-08-06", "", ""},                           // nothing left after stripping
		{"azure", "databricks-meta-llama-3-3-70b-instruct", "", ""}, // wrong provider
		{"openrouter", "gpt-4o", "", ""},                            // unknown provider
	}
	for _, tc := range tests {
		p, ok := c.Lookup(tc.provider, tc.model)
		if tc.wantIn == "" {
			if ok {
				t.Errorf("Lookup(%q, %q) = %+v, want not found", tc.provider, tc.model, p)
			}
			continue
		}
		if !ok || p.InputPer1M != usd(tc.wantIn) || p.OutputPer1M != usd(tc.wantOut) {
			t.Errorf("Lookup(%q, %q) = %+v, %v; want %s/%s", tc.provider, tc.model, p, ok, tc.wantIn, tc.wantOut)
		}
	}
}

func TestDBUConversion(t *testing.T) {
	c := Default()
	p, ok := c.Lookup("databricks", "databricks-meta-llama-3-3-70b-instruct")
	if !ok {
		t.Fatal("llama 3.3 70b not priced")
	}
	// 7.143 DBU × $0.07 = $0.50001; 21.429 DBU × $0.07 = $1.50003 per 1M.
	if p.InputPer1M != 500_010 || p.OutputPer1M != 1_500_030 {
		t.Errorf("price = %+v, want 500010/1500030", p)
	}
	// 2,000 prompt + 1,000 completion tokens: 1,000.02 + 1,500.03 micro$ → 2,500.
	if got := p.Cost(2_000, 1_000); got != 2_500 {
		t.Errorf("Cost = %d, want 2500", got)
	}
	// 1,000,000 prompt + 1 completion tokens: 500,010 + 1.50003 → 500,012.
	if got := p.Cost(1_000_000, 1); got != 500_012 {
		t.Errorf("Cost = %d, want 500012", got)
	}

	r, err := c.WithDBURate(75_000) // $0.075 per DBU
	if err != nil {
		t.Fatal(err)
	}
	p, _ = r.Lookup("databricks", "databricks-meta-llama-3-3-70b-instruct")
	// 7.143 × 0.075 = 0.535725; 21.429 × 0.075 = 1.607175.
	if p.InputPer1M != 535_725 || p.OutputPer1M != 1_607_175 {
		t.Errorf("price at $0.075/DBU = %+v", p)
	}
	if r.Version() != "2026-11-01+dbu=0.075" {
		t.Errorf("Version() = %q, want the rate recorded", r.Version())
	}
	if q, _ := r.Lookup("openai", "gpt-4o"); q.InputPer1M != 2_500_000 {
		t.Errorf("USD prices changed with the DBU rate: %+v", q)
	}
	// Half-up rounding of the per-1M price: 1.429 DBU × $0.000001 = 0.000001429 → 0.
	tiny, err := c.WithDBURate(1)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := tiny.Lookup("databricks", "databricks-bge-large-en"); p.InputPer1M != 1 {
		t.Errorf("1.429 DBU at 1 micro$/DBU = %d micro$/1M, want 1", p.InputPer1M)
	}
	// The original catalog is untouched and back to its own version.
	if p, _ := c.Lookup("databricks", "databricks-meta-llama-3-3-70b-instruct"); p.InputPer1M != 500_010 {
		t.Errorf("WithDBURate modified the original: %+v", p)
	}
	back, _ := r.WithDBURate(70_000)
	if back.Version() != "2026-11-01" {
		t.Errorf("Version() back at the file's rate = %q", back.Version())
	}
	for _, bad := range []int64{0, -1} {
		if _, err := c.WithDBURate(bad); err == nil {
			t.Errorf("WithDBURate(%d) succeeded", bad)
		}
	}
}

func TestWithOverrides(t *testing.T) {
	base := Default()
	c, err := base.WithOverrides("acme-2026-12", []Override{
		{Provider: "openai", Model: "gpt-4o", Input: "2.00", Output: "8.00"},                          // negotiated
		{Provider: "azure", Model: "gpt-3.5-turbo", Input: "1", Output: "2"},                          // takes over an alias
		{Provider: "Databricks", Model: "my-finetune", InputDBU: "10", OutputDBU: "20"},               // new, DBU-priced
		{Provider: "openai", Model: "gpt-5", Aliases: []string{}, Input: "1.25", Output: "10"},        // drops its alias
		{Provider: "vllm", Model: "llama-local", Aliases: []string{"Llama"}, Input: "0", Output: "0"}, // new provider
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Version() != "acme-2026-12" {
		t.Errorf("Version() = %q", c.Version())
	}
	check := func(provider, model string, in, out int64, source string) {
		t.Helper()
		p, ok := c.Lookup(provider, model)
		if !ok || p.InputPer1M != in || p.OutputPer1M != out || p.Source != source {
			t.Errorf("Lookup(%q, %q) = %+v, %v; want %d/%d from %q", provider, model, p, ok, in, out, source)
		}
	}
	check("openai", "gpt-4o", 2_000_000, 8_000_000, "override acme-2026-12")
	check("openai", "gpt-4o-2024-11-20", 2_000_000, 8_000_000, "override acme-2026-12")
	check("openai", "gpt-4o-mini", 150_000, 600_000, "catalog 2026-11-01")
	check("azure", "gpt-3.5-turbo", 1_000_000, 2_000_000, "override acme-2026-12")
	check("azure", "gpt-35-turbo", 500_000, 1_500_000, "catalog 2026-11-01")
	check("databricks", "my-finetune", 700_000, 1_400_000, "override acme-2026-12")
	check("vllm", "llama", 0, 0, "override acme-2026-12")
	if _, ok := c.Lookup("openai", "gpt-5-chat-latest"); ok {
		t.Error("gpt-5-chat-latest still priced after the override removed its alias")
	}
	// Aliases are kept when the override does not list any.
	keep, err := base.WithOverrides("v2", []Override{{Provider: "openai", Model: "gpt-5", Input: "1", Output: "9"}})
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := keep.Lookup("openai", "gpt-5-chat-latest"); !ok || p.OutputPer1M != 9_000_000 {
		t.Errorf("alias after override = %+v, %v", p, ok)
	}
	// A later DBU rate reprices overridden DBU entries too.
	r, err := c.WithDBURate(100_000)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := r.Lookup("databricks", "my-finetune"); p.InputPer1M != 1_000_000 {
		t.Errorf("overridden DBU entry at $0.10/DBU = %+v", p)
	}
	if r.Version() != "acme-2026-12+dbu=0.10" {
		t.Errorf("Version() = %q", r.Version())
	}
	// The base catalog is unchanged.
	if p, _ := base.Lookup("openai", "gpt-4o"); p.InputPer1M != 2_500_000 || base.Version() != "2026-11-01" {
		t.Errorf("WithOverrides modified the base catalog: %+v %q", p, base.Version())
	}

	bad := []struct {
		name    string
		version string
		ovs     []Override
		msg     string
	}{
		{"no version", "", nil, "version is required"},
		{"version with space", "acme 1", nil, "must not contain spaces"},
		{"no model", "v", []Override{{Provider: "openai", Input: "1", Output: "1"}}, "provider and model are required"},
		{"no price", "v", []Override{{Provider: "openai", Model: "x"}}, "no price"},
		{"missing output", "v", []Override{{Provider: "openai", Model: "x", Input: "1"}}, "output is required"},
		{"both kinds", "v", []Override{{Provider: "databricks", Model: "x", Input: "1", Output: "1", InputDBU: "1", OutputDBU: "1"}}, "not both"},
		{"negative", "v", []Override{{Provider: "openai", Model: "x", Input: "-1", Output: "1"}}, "negative"},
		{"float form", "v", []Override{{Provider: "openai", Model: "x", Input: "1e-1", Output: "1"}}, "exponent"},
		{"same model twice", "v", []Override{
			{Provider: "openai", Model: "x", Input: "1", Output: "1"},
			{Provider: "openai", Model: "x", Input: "2", Output: "2"}}, "also used by"},
		{"alias names a catalog model", "v", []Override{
			{Provider: "openai", Model: "x", Aliases: []string{"gpt-4o"}, Input: "1", Output: "1"}}, "override that model instead"},
		{"wildcard alias", "v", []Override{{Provider: "openai", Model: "x", Aliases: []string{"*"}, Input: "1", Output: "1"}}, "not a model name"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := base.WithOverrides(tc.version, tc.ovs)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error = %v, want one containing %q", err, tc.msg)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	const head = "version: \"v1\"\ndbu_usd: \"0.07\"\nmodels:\n"
	tests := []struct{ name, yaml, msg string }{
		{"unknown top-level field", head + "currency: EUR\n", "field currency not found"},
		{"unknown model field", head + "  - {provider: openai, model: a, input: '1', output: '1', cached: '0.5'}\n", "field cached not found"},
		{"no version", "dbu_usd: \"0.07\"\n", "version is required"},
		{"no dbu rate", "version: v1\n", "dbu_usd is required"},
		{"zero dbu rate", "version: v1\ndbu_usd: '0'\n", "must be positive"},
		{"bad dbu rate", "version: v1\ndbu_usd: '7e-2'\n", "exponent"},
		{"bad amount", head + "  - {provider: openai, model: a, input: '0.1234567', output: '1'}\n", "more than 6 decimal places"},
		{"amount as a list", head + "  - {provider: openai, model: a, input: [1], output: '1'}\n", "want a decimal amount"},
		{"duplicate alias", head + "  - {provider: openai, model: a, input: '1', output: '1'}\n  - {provider: openai, model: b, aliases: [a], input: '1', output: '1'}\n", "also used by"},
		{"not yaml", "version: [\n", "parse price catalog"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("Parse error = %v, want one containing %q", err, tc.msg)
			}
		})
	}
}

// TestParseUnquotedAmounts checks that an unquoted YAML number is read from
// its digits, not through a float: 0.1 + 0.2 must be exactly 0.3.
func TestParseUnquotedAmounts(t *testing.T) {
	c, err := Parse(strings.NewReader("version: v1\ndbu_usd: 0.07\nmodels:\n  - {provider: openai, model: a, input: 0.1, output: 0.2}\n"))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := c.Lookup("openai", "a")
	if p.InputPer1M != 100_000 || p.OutputPer1M != 200_000 || p.Cost(1_000_000, 1_000_000) != 300_000 {
		t.Errorf("price = %+v", p)
	}
}

func TestFprint(t *testing.T) {
	c, err := Default().WithOverrides("acme-1", []Override{{Provider: "openai", Model: "gpt-4o", Input: "2", Output: "8"}})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Fprint(&buf, c); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if want := len(c.Entries()) + 3; len(lines) != want { // title, blank, header
		t.Errorf("%d lines, want %d:\n%s", len(lines), want, out)
	}
	for _, want := range []string{
		"price catalog acme-1 (USD per 1M tokens; Databricks at $0.07 per DBU)",
		"PROVIDER", "ALIASES",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, row := range [][]string{
		{"openai", "gpt-4o", "2.00", "8.00", "-", "-", "override", "acme-1", "-"},
		{"openai", "gpt-5", "1.25", "10.00", "-", "-", "catalog", "2026-11-01", "gpt-5-chat-latest"},
		{"databricks", "databricks-meta-llama-3-3-70b-instruct", "0.50001", "1.50003", "7.143", "21.429", "catalog", "2026-11-01", "-"},
	} {
		found := false
		for _, l := range lines {
			if strings.Join(strings.Fields(l), " ") == strings.Join(row, " ") {
				found = true
			}
		}
		if !found {
			t.Errorf("no row %v in:\n%s", row, out)
		}
	}
}

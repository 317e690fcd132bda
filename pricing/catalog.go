package pricing

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

//go:embed catalog.yaml
var embedded []byte

// Wildcard as a model name prices every model of its provider that has no
// entry of its own. The catalog uses it only for the simulator.
const Wildcard = "*"

// Entry is one priced model of a catalog.
type Entry struct {
	Provider string
	Model    string
	Aliases  []string
	// Price is the effective price. For DBU-priced entries it is derived
	// from the DBU figures below at the catalog's DBU rate.
	Price Price
	// DBU reports a Databricks pay-per-token entry priced in DBUs;
	// InputDBUPer1M and OutputDBUPer1M are then micro-DBU per 1M tokens
	// (7.143 DBU = 7,143,000).
	DBU            bool
	InputDBUPer1M  int64
	OutputDBUPer1M int64
}

// Catalog is an immutable set of prices with a version. Its methods are
// safe for concurrent use; the With* methods return modified copies.
type Catalog struct {
	version    string // of the file, or the operator's override version
	dbuRate    int64  // micro-dollars per DBU in effect
	dbuDefault int64  // micro-dollars per DBU named by the catalog file
	entries    []Entry
	index      map[lookupKey]int // model names and aliases → entries index
}

type lookupKey struct{ provider, model string }

// Version names the prices in effect; record it with every cost. It is the
// catalog's version (or the operator's override version), followed by
// "+dbu=<rate>" when the USD-per-DBU rate differs from the catalog file's.
func (c *Catalog) Version() string {
	if c.dbuRate == c.dbuDefault {
		return c.version
	}
	return c.version + "+dbu=" + Micros(c.dbuRate).String()
}

// DBURate returns the USD-per-DBU rate in effect, in micro-dollars.
func (c *Catalog) DBURate() int64 { return c.dbuRate }

// Entries returns a copy of the catalog's entries ordered by provider and
// model.
func (c *Catalog) Entries() []Entry {
	out := make([]Entry, len(c.entries))
	for i, e := range c.entries {
		e.Aliases = slices.Clone(e.Aliases)
		out[i] = e
	}
	return out
}

// Lookup returns the price of model as served by provider. Names are
// compared case-insensitively. It tries, in order:
//
//  1. the model name or an alias, exactly;
//  2. the name without a dated snapshot suffix, "-YYYY-MM-DD" or "-MMDD"
//     (gpt-4o-2024-08-06 → gpt-4o, gpt-3.5-turbo-0125 → gpt-3.5-turbo);
//  3. the provider's Wildcard entry, if any.
//
// It reports false when none matches; callers decide whether an unpriced
// model is an error or costs zero.
func (c *Catalog) Lookup(provider, model string) (Price, bool) {
	k := lookupKey{strings.ToLower(provider), strings.ToLower(model)}
	if i, ok := c.index[k]; ok {
		return c.entries[i].Price, true
	}
	if base, ok := stripDate(k.model); ok {
		if i, ok := c.index[lookupKey{k.provider, base}]; ok {
			return c.entries[i].Price, true
		}
	}
	if i, ok := c.index[lookupKey{k.provider, Wildcard}]; ok {
		return c.entries[i].Price, true
	}
	return Price{}, false
}

// stripDate removes a trailing "-YYYY-MM-DD" or "-MMDD" snapshot suffix.
func stripDate(m string) (string, bool) {
	if n := len(m) - len("-2024-08-06"); n > 0 && isDigits(m[n+1:n+5]) && m[n] == '-' &&
		m[n+5] == '-' && isDigits(m[n+6:n+8]) && m[n+8] == '-' && isDigits(m[n+9:]) {
		return m[:n], true
	}
	if n := len(m) - len("-0125"); n > 0 && m[n] == '-' && isDigits(m[n+1:]) {
		return m[:n], true
	}
	return "", false
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

var defaultCatalog = sync.OnceValue(func() *Catalog {
	c, err := Parse(bytes.NewReader(embedded))
	if err != nil {
		panic("pricing: embedded catalog is invalid: " + err.Error())
	}
	return c
})

// Default returns the catalog embedded in the binary, parsed once.
func Default() *Catalog { return defaultCatalog() }

// file is catalog.yaml's shape. Amounts are decimal strings.
type file struct {
	Version string      `yaml:"version"`
	DBUUSD  decimal     `yaml:"dbu_usd"`
	Models  []fileModel `yaml:"models"`
}

type fileModel struct {
	Provider  string   `yaml:"provider"`
	Model     string   `yaml:"model"`
	Aliases   []string `yaml:"aliases"`
	Input     decimal  `yaml:"input"`
	Output    decimal  `yaml:"output"`
	InputDBU  decimal  `yaml:"input_dbu"`
	OutputDBU decimal  `yaml:"output_dbu"`
}

// decimal keeps a YAML scalar's source text so that an unquoted 0.15 is
// read as the digits written, never through a float.
type decimal string

func (d *decimal) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a decimal amount", n.Line)
	}
	*d = decimal(n.Value)
	return nil
}

// Parse reads a catalog in catalog.yaml's format. Unknown fields, invalid
// amounts, duplicate names and entries priced both in USD and in DBU are
// errors.
func Parse(r io.Reader) (*Catalog, error) {
	var f file
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("parse price catalog: %w", err)
	}
	if err := checkVersion(f.Version); err != nil {
		return nil, fmt.Errorf("parse price catalog: %w", err)
	}
	if f.DBUUSD == "" {
		return nil, errors.New("parse price catalog: dbu_usd is required")
	}
	rate, err := parseScaled(string(f.DBUUSD))
	if err != nil {
		return nil, fmt.Errorf("parse price catalog: dbu_usd: %w", err)
	}
	if rate == 0 {
		return nil, errors.New("parse price catalog: dbu_usd must be positive")
	}
	ovs := make([]Override, len(f.Models))
	for i, m := range f.Models {
		ovs[i] = Override{
			Provider: m.Provider, Model: m.Model, Aliases: m.Aliases,
			Input: string(m.Input), Output: string(m.Output),
			InputDBU: string(m.InputDBU), OutputDBU: string(m.OutputDBU),
		}
	}
	entries, err := buildEntries(ovs, "catalog "+f.Version)
	if err != nil {
		return nil, fmt.Errorf("parse price catalog: %w", err)
	}
	c := &Catalog{version: f.Version, dbuRate: rate, dbuDefault: rate, entries: entries}
	if err := c.finish(); err != nil {
		return nil, fmt.Errorf("parse price catalog: %w", err)
	}
	return c, nil
}

func checkVersion(v string) error {
	if v == "" {
		return errors.New("version is required")
	}
	if strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("version %q must not contain spaces or control characters", v)
	}
	return nil
}

// Override is an operator's price for one model, typically from config.
// Give either Input and Output (USD per 1M tokens) or InputDBU and
// OutputDBU (Databricks DBU per 1M tokens, priced at the catalog's DBU
// rate), as decimal strings; "0" is a valid price, an empty string is not.
type Override struct {
	Provider  string
	Model     string
	Aliases   []string
	Input     string
	Output    string
	InputDBU  string
	OutputDBU string
}

// WithOverrides returns a copy of c in which each override replaces the
// entry of the same provider and model, or is added if there is none. A
// replaced entry keeps its aliases unless the override lists its own. An
// override whose model is another entry's alias takes that name over. The
// copy's version is version, which must be non-empty: costs computed with
// operator prices must not be recorded under the catalog's version.
func (c *Catalog) WithOverrides(version string, overrides []Override) (*Catalog, error) {
	if err := checkVersion(version); err != nil {
		return nil, fmt.Errorf("price overrides: %w", err)
	}
	added, err := buildEntries(overrides, "override "+version)
	if err != nil {
		return nil, fmt.Errorf("price overrides: %w", err)
	}
	entries := c.Entries()
	taken := make(map[lookupKey]bool) // names the overrides claim
	for _, o := range added {
		taken[lookupKey{o.Provider, o.Model}] = true
		for _, a := range o.Aliases {
			taken[lookupKey{o.Provider, a}] = true
		}
	}
	out := entries[:0]
	for _, e := range entries {
		if i := slices.IndexFunc(added, func(o Entry) bool { return o.Provider == e.Provider && o.Model == e.Model }); i >= 0 {
			if added[i].Aliases == nil {
				added[i].Aliases = e.Aliases
			}
			continue
		}
		if taken[lookupKey{e.Provider, e.Model}] {
			return nil, fmt.Errorf("price overrides: %s/%s: name is a catalog model, override that model instead", e.Provider, e.Model)
		}
		e.Aliases = slices.DeleteFunc(e.Aliases, func(a string) bool { return taken[lookupKey{e.Provider, a}] })
		out = append(out, e)
	}
	n := &Catalog{version: version, dbuRate: c.dbuRate, dbuDefault: c.dbuDefault, entries: append(out, added...)}
	if err := n.finish(); err != nil {
		return nil, fmt.Errorf("price overrides: %w", err)
	}
	return n, nil
}

// WithDBURate returns a copy of c that prices DBU entries at micros
// micro-dollars per DBU (an operator's negotiated or cloud-specific rate).
// The rate must be positive. Version reflects a rate that differs from the
// catalog file's.
func (c *Catalog) WithDBURate(micros int64) (*Catalog, error) {
	if micros <= 0 {
		return nil, fmt.Errorf("dbu rate %d micro-dollars: must be positive", micros)
	}
	n := &Catalog{version: c.version, dbuRate: micros, dbuDefault: c.dbuDefault, entries: c.Entries()}
	if err := n.finish(); err != nil {
		return nil, fmt.Errorf("dbu rate %s: %w", Micros(micros), err)
	}
	return n, nil
}

// buildEntries validates raw prices and converts them to entries, with
// names lowercased. DBU entries get their USD price in finish.
func buildEntries(ovs []Override, source string) ([]Entry, error) {
	out := make([]Entry, 0, len(ovs))
	for i, o := range ovs {
		e := Entry{
			Provider: strings.ToLower(strings.TrimSpace(o.Provider)),
			Model:    strings.ToLower(strings.TrimSpace(o.Model)),
			Price:    Price{Source: source},
		}
		name := fmt.Sprintf("model %d (%s/%s)", i+1, e.Provider, e.Model)
		if e.Provider == "" || e.Model == "" {
			return nil, fmt.Errorf("%s: provider and model are required", name)
		}
		if o.Aliases != nil {
			e.Aliases = make([]string, 0, len(o.Aliases))
		}
		for _, a := range o.Aliases {
			a = strings.ToLower(strings.TrimSpace(a))
			if a == "" || a == Wildcard {
				return nil, fmt.Errorf("%s: alias %q is not a model name", name, a)
			}
			e.Aliases = append(e.Aliases, a)
		}
		usd := o.Input != "" || o.Output != ""
		dbu := o.InputDBU != "" || o.OutputDBU != ""
		var err error
		switch {
		case usd && dbu:
			return nil, fmt.Errorf("%s: give USD prices or DBU figures, not both", name)
		case usd:
			if e.Price.InputPer1M, err = amount(o.Input, "input"); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			if e.Price.OutputPer1M, err = amount(o.Output, "output"); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
		case dbu:
			e.DBU = true
			if e.InputDBUPer1M, err = amount(o.InputDBU, "input_dbu"); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			if e.OutputDBUPer1M, err = amount(o.OutputDBU, "output_dbu"); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
		default:
			return nil, fmt.Errorf("%s: no price: give input and output, or input_dbu and output_dbu", name)
		}
		out = append(out, e)
	}
	return out, nil
}

func amount(s, field string) (int64, error) {
	if s == "" {
		return 0, fmt.Errorf("%s is required", field)
	}
	v, err := parseScaled(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", field, err)
	}
	return v, nil
}

// finish prices DBU entries at the catalog's rate, sorts the entries and
// builds the lookup index, rejecting names used twice.
func (c *Catalog) finish() error {
	for i := range c.entries {
		e := &c.entries[i]
		if !e.DBU {
			continue
		}
		in, ok1 := mulScaled(e.InputDBUPer1M, c.dbuRate)
		out, ok2 := mulScaled(e.OutputDBUPer1M, c.dbuRate)
		if !ok1 || !ok2 {
			return fmt.Errorf("%s/%s: DBU price overflows", e.Provider, e.Model)
		}
		e.Price.InputPer1M, e.Price.OutputPer1M = in, out
	}
	slices.SortFunc(c.entries, func(a, b Entry) int {
		if n := strings.Compare(a.Provider, b.Provider); n != 0 {
			return n
		}
		return strings.Compare(a.Model, b.Model)
	})
	c.index = make(map[lookupKey]int, len(c.entries)*2)
	for i, e := range c.entries {
		for _, name := range append([]string{e.Model}, e.Aliases...) {
			k := lookupKey{e.Provider, name}
			if j, dup := c.index[k]; dup {
				return fmt.Errorf("%s/%s: name %q is also used by %s/%s", e.Provider, e.Model, name, c.entries[j].Provider, c.entries[j].Model)
			}
			c.index[k] = i
		}
	}
	return nil
}

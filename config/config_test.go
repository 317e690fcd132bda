package config

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestDefault(t *testing.T) {
	c := Default()
	if c.Listen != "127.0.0.1:8080" || c.Ledger.DSN != "./sluice-data/sluice.db" {
		t.Fatalf("default listen/ledger = %q %q", c.Listen, c.Ledger.DSN)
	}
	names := map[string][]string{}
	for _, e := range c.Endpoints {
		names[e.Name] = e.APIs
	}
	if len(names["sim-chat"]) == 0 || len(names["sim-embed"]) == 0 {
		t.Fatalf("default endpoints = %v", names)
	}
	if c.Upstreams[0].Type != TypeSimulator || c.Upstreams[0].Provider != "simulator" {
		t.Fatalf("default upstream = %+v", c.Upstreams[0])
	}
	if c.Server.ReadHeaderTimeout.D() != DefaultReadHeaderTimeout || c.Server.MaxBodyBytes != DefaultMaxBodyBytes {
		t.Fatalf("server defaults not applied: %+v", c.Server)
	}
}

func TestGoodFile(t *testing.T) {
	raw, err := os.ReadFile("testdata/full.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(bytes.NewReader(raw), env(map[string]string{
		"LEDGER_DSN": "postgres://u@127.0.0.1/db", "OPENAI_API_KEY": "sk-test",
		"AZURE_OPENAI_API_KEY": "az", "DATABRICKS_TOKEN": "dapi",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Ledger.DSN != "postgres://u@127.0.0.1/db" || c.Upstreams[0].APIKey != "sk-test" {
		t.Fatalf("env not expanded: %q %q", c.Ledger.DSN, c.Upstreams[0].APIKey)
	}
	if got := c.Upstreams[0].Timeout.D(); got != 90*time.Second {
		t.Fatalf("timeout = %v", got)
	}
	wantProv := []string{"openai", "azure", "databricks", "simulator"}
	for i, u := range c.Upstreams {
		if u.Provider != wantProv[i] {
			t.Errorf("upstream %s provider = %q, want %q", u.Name, u.Provider, wantProv[i])
		}
	}
	if c.Endpoints[0].Model != "gpt-4o-mini" {
		t.Errorf("endpoint model should default to its name, got %q", c.Endpoints[0].Model)
	}
	if got := c.Endpoints[1].APIs; len(got) != 1 || got[0] != "chat" {
		t.Errorf("apis = %v", got)
	}
}

func TestUnknownKeyHasLine(t *testing.T) {
	src := "listen: 127.0.0.1:1\nledger:\n  dsn: x.db\n  colour: blue\nupstreams: []\n"
	_, err := Parse(strings.NewReader(src), nil)
	var es Errors
	if !errors.As(err, &es) || len(es) != 1 {
		t.Fatalf("err = %v", err)
	}
	if es[0].Line != 4 || !strings.Contains(es[0].Msg, "colour") {
		t.Fatalf("got %+v, want line 4 about colour", es[0])
	}
}

func TestMissingEnv(t *testing.T) {
	src := "upstreams:\n  - name: o\n    type: openai\n    base_url: https://api.openai.com/v1\n    api_key: ${NOPE_NOT_SET}\n"
	_, err := Parse(strings.NewReader(src), env(nil))
	if err == nil || !strings.Contains(err.Error(), "line 5: environment variable NOPE_NOT_SET is not set") {
		t.Fatalf("err = %v", err)
	}
}

func TestBadFile(t *testing.T) {
	raw, err := os.ReadFile("testdata/bad.yml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse(bytes.NewReader(raw), nil)
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("err = %v", err)
	}
	want := []string{
		`line 1: listen: "nowhere" is not host:port`,
		`line 3: ledger.synchronous: must be normal or full, not "sometimes"`,
		`line 7: upstreams[0].base_url: must be an absolute http or https URL`,
		`line 8: upstreams[1].name: "a" is declared twice`,
		`line 8: upstreams[1].api_version: is required for azure upstreams`,
		`line 12: upstreams[2].type: "telepathy" is not one of openai, azure, mlflow, simulator`,
		`line 15: endpoints[0].upstream: "missing" is not a declared upstream`,
		`line 16: endpoints[0].apis[1]: "images" is not chat, completions, embeddings or invocations`,
		`line 18: endpoints[0].price.input_per_1m: "-1" is not a plain decimal USD amount`,
		`line 19: endpoints[0].price.output_per_1m: "1e3" is not a plain decimal USD amount`,
	}
	got := es.Error()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("missing error %q in:\n%s", w, got)
		}
	}
	if len(es) != len(want) {
		t.Errorf("got %d errors, want %d:\n%s", len(es), len(want), got)
	}
}

func TestTypeErrorHasLine(t *testing.T) {
	src := "listen: 127.0.0.1:1\nserver:\n  max_body_bytes: lots\n"
	_, err := Parse(strings.NewReader(src), nil)
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("err = %v", err)
	}
	src = "server:\n  shutdown_grace: soon\n"
	_, err = Parse(strings.NewReader(src), nil)
	if err == nil || !strings.Contains(err.Error(), `line 2: "soon" is not a duration`) {
		t.Fatalf("err = %v", err)
	}
}

func TestExamplesAreValid(t *testing.T) {
	files, _ := os.ReadDir("../examples")
	n := 0
	for _, f := range files {
		if !strings.HasSuffix(f.Name(), ".yaml") {
			continue
		}
		n++
		raw, err := os.ReadFile("../examples/" + f.Name())
		if err != nil {
			t.Fatal(err)
		}
		any := func(string) (string, bool) { return "placeholder", true }
		if _, err := Parse(bytes.NewReader(raw), any); err != nil {
			t.Errorf("examples/%s: %v", f.Name(), err)
		}
	}
	if n < 4 {
		t.Errorf("found %d example configs, want at least 4", n)
	}
}

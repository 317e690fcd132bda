package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/audit"
	"github.com/sluice-gateway/sluice/store/sqlite"
)

// auditFixture writes a small audit trail to a fresh SQLite ledger and
// returns the config path and the ledger path.
func auditFixture(t *testing.T) (cfgPath, dbPath string, recs []audit.Record) {
	t.Helper()
	dir := t.TempDir()
	dbPath = filepath.Join(dir, "sluice.db")
	cfgPath = filepath.Join(dir, "sluice.yaml")
	cfg := "ledger: {dsn: " + dbPath + "}\negress: {private_prefixes: [10.0.0.0/8]}\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(dbPath, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	at := func(h int) time.Time { return time.Date(2026, 11, 2, h, 0, 0, 0, time.UTC) }
	recs, err = audit.NewChain(st, audit.ChainOptions{}).Append(context.Background(),
		audit.Record{Time: at(9), Kind: audit.KindRequest, RequestID: "r1", Class: "confidential", ClassReasons: []string{"detector:email"},
			Upstream: "private-llm", EgressClass: "private", DialedAddr: "10.0.3.4:8000", Decision: "routed"},
		audit.Record{Time: at(10), Kind: audit.KindRequest, RequestID: "r2", Class: "confidential",
			Upstream: "public-llm", EgressClass: "public", DialedAddr: "203.0.113.9:443", Decision: "allowed"},
		audit.Record{Time: at(11), Kind: audit.KindRequest, RequestID: "r3", Class: "public",
			Upstream: "public-llm", EgressClass: "public", DialedAddr: "203.0.113.9:443", Decision: "allowed"},
		audit.Record{Time: at(12), Kind: audit.KindRequestRefused, RequestID: "r4", Class: "confidential", Decision: "blocked"},
		audit.Record{Time: at(13), Kind: audit.KindConnectionRefused, ClientAddr: "192.0.2.7:5555", Decision: "refused", Reason: "source_not_allowed"},
	)
	if err != nil {
		t.Fatal(err)
	}
	return cfgPath, dbPath, recs
}

func runAuditCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := auditCommand(context.Background(), args, &out)
	return out.String(), err
}

func TestAuditList(t *testing.T) {
	cfg, _, _ := auditFixture(t)

	out, err := runAuditCmd(t, "--config", cfg, "--class", "confidential")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"chain: verified (head 5:",
		"2 requests of class confidential were sent to an upstream, 1 refused.",
		"1 went to a NON-PRIVATE destination: record 2 (public-llm, public, 203.0.113.9:443).",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "r3") || strings.Contains(out, "192.0.2.7") {
		t.Errorf("records of other classes listed:\n%s", out)
	}

	out, err = runAuditCmd(t, "--config", cfg, "--class", "confidential", "--from", "2026-11-02T08:00:00Z", "--to", "2026-11-02T10:00:00Z")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "1 request of class confidential from 2026-11-02T08:00:00Z until 2026-11-02T10:00:00Z was sent to an upstream, 0 refused. All went to private destinations") {
		t.Errorf("time-bounded listing:\n%s", out)
	}

	out, err = runAuditCmd(t, "--config", cfg, "--format", "json", "--kind", "connection_refused")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Summary auditSummary `json:"summary"`
		Records []auditRow   `json:"records"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("json output: %v\n%s", err, out)
	}
	if len(doc.Records) != 1 || doc.Records[0].ClientAddr != "192.0.2.7:5555" || doc.Summary.Chain != "verified" || doc.Summary.Sent != 0 {
		t.Errorf("json output: %+v", doc)
	}
	if _, err := runAuditCmd(t, "--config", cfg, "--format", "xml"); err == nil {
		t.Error("--format xml accepted")
	}
}

func TestAuditVerifyDetectsTampering(t *testing.T) {
	cfg, dbPath, recs := auditFixture(t)
	out, err := runAuditCmd(t, "verify", "--config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	head := strings.TrimSpace(out[strings.Index(out, "head ")+len("head "):])
	if !strings.HasPrefix(out, "ok: 5 records verified; head 5:") {
		t.Fatalf("verify: %s", out)
	}
	if _, err := runAuditCmd(t, "verify", "--config", cfg, "--anchor", head); err != nil {
		t.Fatalf("verify with the current head as anchor: %v", err)
	}

	db, err := sql.Open("sqlite", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.Exec(q, args...); err != nil {
			t.Fatal(err)
		}
	}

	// Rewrite where request 2 went.
	exec(`UPDATE audit SET egress_class = 'private', dialed_addr = '10.0.3.4:8000' WHERE seq = 2`)
	_, err = runAuditCmd(t, "verify", "--config", cfg)
	if !errors.Is(err, audit.ErrEdited) || !strings.Contains(err.Error(), "record 2") {
		t.Errorf("verify after an edit = %v", err)
	}
	out, err = runAuditCmd(t, "--config", cfg, "--class", "confidential")
	if err == nil || !strings.Contains(out, "chain: DOES NOT VERIFY") {
		t.Errorf("listing an edited trail: %v\n%s", err, out)
	}
	exec(`UPDATE audit SET egress_class = 'public', dialed_addr = '203.0.113.9:443' WHERE seq = 2`)
	if _, err := runAuditCmd(t, "verify", "--config", cfg); err != nil {
		t.Fatalf("verify after undoing the edit: %v", err)
	}

	// Delete a row in the middle.
	exec(`DELETE FROM audit WHERE seq = 3`)
	if _, err := runAuditCmd(t, "verify", "--config", cfg); !errors.Is(err, audit.ErrMissing) {
		t.Errorf("verify after a deletion = %v", err)
	}
	r := recs[2]
	exec(`INSERT INTO audit (seq, at, kind, request_id, key_id, team, endpoint, class, class_reasons, candidates, upstream,
		egress_class, dialed_addr, client_addr, decision, reason, prev_hash, hash)
		VALUES (?, ?, ?, ?, '', '', '', ?, '[]', '[]', ?, ?, ?, '', ?, '', ?, ?)`,
		r.Seq, r.Time.UnixMicro(), r.Kind, r.RequestID, r.Class, r.Upstream, r.EgressClass, r.DialedAddr, r.Decision, r.PrevHash[:], r.Hash[:])
	if _, err := runAuditCmd(t, "verify", "--config", cfg); err != nil {
		t.Fatalf("verify after restoring the row: %v", err)
	}

	// Cut the last record: only the anchor notices.
	exec(`DELETE FROM audit WHERE seq = 5`)
	if _, err := runAuditCmd(t, "verify", "--config", cfg); err != nil {
		t.Fatalf("a cut tail is not detectable without an anchor, got %v", err)
	}
	if _, err := runAuditCmd(t, "verify", "--config", cfg, "--anchor", head); err == nil || !strings.Contains(err.Error(), "cut from its end") {
		t.Errorf("verify with an anchor past the end = %v", err)
	}
}

package sqlite

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/store/storetest"
)

func openTest(t *testing.T, path string, opts Options) *Store {
	t.Helper()
	st, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	})
	return st
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) sluice.Store {
		return openTest(t, filepath.Join(t.TempDir(), "ledger.db"), Options{})
	})
}

func TestBudgetConformance(t *testing.T) {
	storetest.RunBudgets(t, func(t *testing.T) storetest.BudgetStore {
		return openTest(t, filepath.Join(t.TempDir(), "ledger.db"), Options{})
	})
}

func TestConformanceSynchronousFull(t *testing.T) {
	storetest.Run(t, func(t *testing.T) sluice.Store {
		return openTest(t, filepath.Join(t.TempDir(), "ledger.db"), Options{Synchronous: SyncFull})
	})
}

func TestOptions(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		sync, want string
	}{{"", "1"}, {"normal", "1"}, {"FULL", "2"}} {
		st := openTest(t, filepath.Join(dir, tc.sync+".db"), Options{Synchronous: tc.sync})
		var got string
		if err := st.writer.QueryRow("PRAGMA synchronous").Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("Synchronous %q: PRAGMA synchronous = %s, want %s", tc.sync, got, tc.want)
		}
	}
	if _, err := Open(filepath.Join(dir, "x.db"), Options{Synchronous: "off"}); err == nil {
		t.Error(`Synchronous "off" accepted`)
	}
	if _, err := Open("", Options{}); err == nil {
		t.Error("empty path accepted")
	}
}

func TestPragmas(t *testing.T) {
	st := openTest(t, filepath.Join(t.TempDir(), "ledger.db"), Options{})
	for _, db := range []struct {
		name string
		q    func(string) *stringRow
	}{
		{"writer", func(p string) *stringRow { return &stringRow{st.writer.QueryRow("PRAGMA " + p)} }},
		{"checkpointer", func(p string) *stringRow { return &stringRow{st.ckpt.QueryRow("PRAGMA " + p)} }},
	} {
		for p, want := range map[string]string{
			"journal_mode":       "wal",
			"wal_autocheckpoint": "0",
			"foreign_keys":       "1",
			"busy_timeout":       "5000",
		} {
			if got := db.q(p).String(t); got != want {
				t.Errorf("%s: PRAGMA %s = %s, want %s", db.name, p, got, want)
			}
		}
	}
	var qo string
	if err := st.reader.QueryRow("PRAGMA query_only").Scan(&qo); err != nil || qo != "1" {
		t.Errorf("reader query_only = %q, %v; want 1", qo, err)
	}
	if _, err := st.reader.Exec("DELETE FROM usage"); err == nil {
		t.Error("read pool accepted a write")
	}
}

type stringRow struct {
	row interface{ Scan(...any) error }
}

func (r *stringRow) String(t *testing.T) string {
	t.Helper()
	var s string
	if err := r.row.Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestOpenCreatesDirectoryAndKeepsData(t *testing.T) {
	// A path with characters that mean something in a URI.
	path := filepath.Join(t.TempDir(), "a dir", "led?ger#1%.db")
	st, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	k := sluice.Key{ID: "k", Name: "n", Team: "t", CreatedAt: time.Unix(1, 0)}
	if err := st.CreateKey(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database not at the given path: %v", err)
	}
	st = openTest(t, path, Options{}) // migrations already applied
	if _, err := st.Key(context.Background(), "k"); err != nil {
		t.Fatalf("key lost across reopen: %v", err)
	}
	var n int
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.reader.QueryRow("SELECT count(*) FROM schema_migrations").Scan(&n); err != nil || n != len(ms) {
		t.Errorf("schema_migrations rows = %d, %v; want %d, one per migration", n, err, len(ms))
	}
}

func TestCheckpointAfterManyRows(t *testing.T) {
	st, err := open(filepath.Join(t.TempDir(), "ledger.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	type result struct{ frames, done int64 }
	results := make(chan result, 16)
	st.interval = time.Hour // only the row count may trigger it
	st.ckptRows = 100
	st.onCheckpoint = func(frames, done int64, err error) {
		if err != nil {
			t.Errorf("checkpoint: %v", err)
		}
		select {
		case results <- result{frames, done}:
		default:
		}
	}
	st.start()
	t.Cleanup(func() { st.Close() })

	recs := make([]sluice.UsageRecord, st.ckptRows)
	for i := range recs {
		recs[i] = sluice.UsageRecord{RequestID: fmt.Sprintf("r%05d", i), Time: time.Unix(int64(i), 0)}
	}
	if err := st.InsertUsage(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-results:
		if r.frames == 0 || r.done == 0 {
			t.Errorf("checkpoint copied %d of %d WAL frames, want some", r.done, r.frames)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no checkpoint after writing ckptRows rows")
	}
}

// The helper process opens the same file as the test and writes keys and
// usage while the test writes too.
const helperEnv = "SLUICE_SQLITE_HELPER_DB"

func TestHelperProcess(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		t.Skip("helper for TestMultiProcess")
	}
	st := openTest(t, path, Options{})
	ctx := context.Background()
	for i := range 50 {
		k := sluice.Key{ID: fmt.Sprintf("child-%d", i), Hash: sha256.Sum256([]byte{byte(i)}), Team: "t", CreatedAt: time.Unix(int64(i), 0)}
		if err := st.CreateKey(ctx, k); err != nil {
			t.Fatal(err)
		}
		recs := []sluice.UsageRecord{{RequestID: fmt.Sprintf("child-%d", i)}, {RequestID: "shared"}}
		if err := st.InsertUsage(ctx, recs); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Keys(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMultiProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "" {
		t.Skip("running as helper")
	}
	path := filepath.Join(t.TempDir(), "ledger.db")
	ctx := context.Background()

	// Start the other process before this one has created the file, so the
	// two race to create and migrate it.
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+path)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	st := openTest(t, path, Options{})
	for i := range 50 {
		recs := []sluice.UsageRecord{{RequestID: fmt.Sprintf("parent-%d", i)}, {RequestID: "shared"}}
		if err := st.InsertUsage(ctx, recs); err != nil {
			t.Fatal(err)
		}
		if err := st.CreateKey(ctx, sluice.Key{ID: fmt.Sprintf("parent-%d", i), CreatedAt: time.Unix(int64(i), 0)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper process: %v\n%s", err, out.String())
	}
	ks, err := st.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ks) != 100 {
		t.Errorf("%d keys, want 100 (50 from each process)", len(ks))
	}
	rows, err := st.UsageReport(ctx, sluice.UsageQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Requests != 101 {
		t.Errorf("usage report %+v, want 101 requests", rows)
	}
	if _, err := st.Usage(ctx, "child-49"); err != nil {
		t.Errorf("record written by the other process: %v", err)
	}
}

func TestClosedStore(t *testing.T) {
	st, err := Open(filepath.Join(t.TempDir(), "ledger.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	err = st.InsertUsage(context.Background(), []sluice.UsageRecord{{RequestID: "x"}})
	if err == nil || errors.Is(err, sluice.ErrConflict) {
		t.Errorf("insert into closed store: %v", err)
	}
}

func TestTeamConformance(t *testing.T) {
	storetest.RunTeams(t, func(t *testing.T) storetest.TeamStore {
		return openTest(t, filepath.Join(t.TempDir(), "ledger.db"), Options{})
	})
}

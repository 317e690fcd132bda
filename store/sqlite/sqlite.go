// Package sqlite keeps Sluice's keys, teams and usage ledger in a SQLite
// file, with a daily rollup of the ledger that reports read for whole days,
// and the serving endpoints created through the control plane with their
// hourly capacity charges and inference log.
//
// It is the single-node store: one file, opened by the gateway and, at the
// same time, by the sluice CLI for key management. The database runs in WAL
// mode, so readers never block the writer. Writes go through one dedicated
// connection and are serialised; reads use a separate pool. Budget
// reservations and their settlement, which InsertUsage does in the
// transaction that inserts the records, are writes like any other, so a
// hard budget holds within one process and across processes sharing the
// file (see budgets.go).
//
// SQLite checkpoints the WAL automatically inside the COMMIT that crosses the
// threshold, which shows up as 5–9 ms spikes in commit latency. The store
// turns that off (wal_autocheckpoint=0) and checkpoints from a background
// goroutine on its own connection instead, periodically and whenever enough
// rows have been written since the last checkpoint.
//
//	st, err := sqlite.Open("/var/lib/sluice/ledger.db", sqlite.Options{})
//	if err != nil { ... }
//	defer st.Close()
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gateway/sluice"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// Synchronous levels accepted by Options.Synchronous.
const (
	// SyncNormal commits without waiting for the disk: a committed record
	// survives a crash of the process, but the last commits before a power
	// loss or kernel crash may be lost (the database stays consistent).
	SyncNormal = "normal"
	// SyncFull fsyncs the WAL on every commit: a committed record survives
	// power loss too, at the cost of about one fdatasync per commit.
	SyncFull = "full"
)

// Options tune a SQLite store. The zero value is ready to use.
type Options struct {
	// Synchronous is SyncNormal (the default when empty) or SyncFull.
	// See those constants for the durability each one gives.
	Synchronous string
	// Logger receives background checkpoint failures. Nil means
	// slog.Default().
	Logger *slog.Logger
}

const (
	busyTimeout = 5 * time.Second
	// checkpointInterval is how often the background checkpointer runs
	// even when little has been written.
	checkpointInterval = time.Second
	// checkpointRows is how many written rows since the last checkpoint
	// wake the checkpointer early, which keeps the WAL small under load.
	checkpointRows = 4096
	// journalSizeLimit truncates a WAL that grew unusually large back to
	// this size once it has been checkpointed and restarted.
	journalSizeLimit = 64 << 20
)

// Store is a sluice.Store kept in one SQLite file. It is safe for
// concurrent use, and several processes may open the same file.
type Store struct {
	writer *sql.DB // exactly one connection: all writes, serialised
	reader *sql.DB // read-only pool
	ckpt   *sql.DB // one connection for the background checkpointer
	log    *slog.Logger

	insertUsage *sql.Stmt // prepared on the writer connection
	addDaily    *sql.Stmt // prepared on the writer connection

	written  atomic.Int64  // rows written since the last checkpoint
	wake     chan struct{} // wakes the checkpointer early
	stop     chan struct{} // closed by Close
	stopped  chan struct{} // closed when the checkpointer exits
	interval time.Duration // checkpointInterval, but tests may shorten it
	ckptRows int64         // checkpointRows, but tests may lower it

	// onCheckpoint, when set before the checkpointer starts, observes each
	// checkpoint's result (tests only).
	onCheckpoint func(walFrames, checkpointed int64, err error)

	closeOnce sync.Once
	closeErr  error
}

var _ sluice.Store = (*Store)(nil)

// Open opens (creating if needed) the SQLite database at path, creates its
// parent directory, applies pending migrations and starts the background
// checkpointer. Close the store to stop it.
func Open(path string, opts Options) (*Store, error) {
	s, err := open(path, opts)
	if err != nil {
		return nil, err
	}
	s.start()
	return s, nil
}

// open does everything Open does except start the checkpointer, so that
// internal tests can install hooks first.
func open(path string, opts Options) (*Store, error) {
	syncMode, err := synchronousPragma(opts.Synchronous)
	if err != nil {
		return nil, err
	}
	if path == "" {
		return nil, errors.New("sqlite: empty database path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o750); err != nil {
		return nil, fmt.Errorf("sqlite: create directory: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Store{
		log:      log,
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		stopped:  make(chan struct{}),
		interval: checkpointInterval,
		ckptRows: checkpointRows,
	}

	// Pragmas common to every connection. busy_timeout makes a connection
	// wait for a lock held by another process instead of failing at once.
	common := []string{
		fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()),
		"foreign_keys(1)",
	}
	writable := append(common[:len(common):len(common)],
		"journal_mode(WAL)",
		"synchronous("+syncMode+")",
		"wal_autocheckpoint(0)",
		fmt.Sprintf("journal_size_limit(%d)", journalSizeLimit),
	)

	// The writer begins transactions with BEGIN IMMEDIATE: it takes the
	// write lock up front (waiting under busy_timeout if another process
	// holds it) instead of failing with SQLITE_BUSY when a deferred
	// transaction tries to upgrade.
	s.writer, err = sql.Open("sqlite", dsn(abs, writable, "_txlock", "immediate"))
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	s.writer.SetMaxOpenConns(1)
	s.writer.SetMaxIdleConns(1)
	s.writer.SetConnMaxLifetime(0)
	s.writer.SetConnMaxIdleTime(0)

	// The writer's first connection switches the file to WAL mode; only
	// then are the other pools opened.
	if err := s.migrate(context.Background()); err != nil {
		s.writer.Close()
		return nil, err
	}

	s.reader, err = sql.Open("sqlite", dsn(abs, append(common, "query_only(1)")))
	if err != nil {
		s.writer.Close()
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	s.reader.SetMaxOpenConns(n)
	s.reader.SetMaxIdleConns(n)

	s.ckpt, err = sql.Open("sqlite", dsn(abs, writable))
	if err != nil {
		s.writer.Close()
		s.reader.Close()
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	s.ckpt.SetMaxOpenConns(1)
	s.ckpt.SetMaxIdleConns(1)

	s.insertUsage, err = s.writer.Prepare(insertUsageSQL)
	if err == nil {
		s.addDaily, err = s.writer.Prepare(addDailySQL)
	}
	if err != nil {
		if s.insertUsage != nil {
			s.insertUsage.Close()
		}
		s.writer.Close()
		s.reader.Close()
		s.ckpt.Close()
		return nil, fmt.Errorf("sqlite: prepare insert: %w", err)
	}
	return s, nil
}

func synchronousPragma(v string) (string, error) {
	switch strings.ToLower(v) {
	case "", SyncNormal:
		return "NORMAL", nil
	case SyncFull:
		return "FULL", nil
	}
	return "", fmt.Errorf("sqlite: synchronous must be %q or %q, not %q", SyncNormal, SyncFull, v)
}

// dsn builds a file: URI for path with the driver's _pragma parameters and
// any extra key/value pairs. A URI (rather than a bare path) keeps paths
// containing '?' or '#' intact.
func dsn(path string, pragmas []string, kv ...string) string {
	q := url.Values{}
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		q.Add(kv[i], kv[i+1])
	}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(path), OmitHost: true, RawQuery: q.Encode()}
	return u.String()
}

// write runs fn in a write transaction on the writer connection and counts
// rows toward the next checkpoint.
func (s *Store) write(ctx context.Context, rows int, fn func(tx *sql.Tx) error) error {
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit: %w", err)
	}
	if s.written.Add(int64(rows)) >= s.ckptRows {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

func (s *Store) start() { go s.checkpointer() }

// checkpointer runs PASSIVE checkpoints until Close. A PASSIVE checkpoint
// never blocks readers or the writer; it copies what it can and leaves the
// rest for the next round.
func (s *Store) checkpointer() {
	defer close(s.stopped)
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		case <-s.wake:
		}
		s.checkpoint()
	}
}

func (s *Store) checkpoint() {
	s.written.Store(0)
	var busy, frames, done int64
	err := s.ckpt.QueryRow("PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &done)
	if err != nil {
		s.log.Warn("sqlite: wal checkpoint failed", "err", err)
	}
	if s.onCheckpoint != nil {
		s.onCheckpoint(frames, done, err)
	}
}

// Close stops the checkpointer, checkpoints once more and closes every
// connection. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.stopped
		s.checkpoint()
		s.closeErr = errors.Join(
			s.insertUsage.Close(),
			s.addDaily.Close(),
			s.reader.Close(),
			s.ckpt.Close(),
			s.writer.Close(),
		)
		if s.closeErr != nil {
			s.closeErr = fmt.Errorf("sqlite: close: %w", s.closeErr)
		}
	})
	return s.closeErr
}

// micros converts t to microseconds since the Unix epoch.
func micros(t time.Time) int64 { return t.UnixMicro() }

// fromMicros converts microseconds since the Unix epoch to a UTC time.
func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// nullMicros is micros(t), or NULL for the zero time.
func nullMicros(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: micros(t), Valid: true}
}

func fromNullMicros(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromMicros(v.Int64)
}

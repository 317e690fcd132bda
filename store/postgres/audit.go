package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/audit"
)

var _ audit.Store = (*Store)(nil)

var auditColumnNames = []string{"seq", "at", "kind", "request_id", "key_id", "team", "endpoint", "class",
	"class_reasons", "candidates", "upstream", "egress_class", "dialed_addr", "client_addr", "decision", "reason",
	"prev_hash", "hash"}

var auditColumns = strings.Join(auditColumnNames, ", ")

// AppendAudit stores recs in one transaction, with one COPY. The first
// record must follow the stored chain's last Seq: an existing Seq is
// sluice.ErrConflict (another replica appended first, which the unique
// index also reports when both write at once), a jump forward is refused
// as a gap.
func (s *Store) AppendAudit(ctx context.Context, recs []audit.Record) error {
	if len(recs) == 0 {
		return nil
	}
	for i := 1; i < len(recs); i++ {
		if recs[i].Seq != recs[i-1].Seq+1 {
			return fmt.Errorf("postgres: append audit: records %d and %d are not consecutive", recs[i-1].Seq, recs[i].Seq)
		}
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var last int64
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(seq), 0) FROM audit`).Scan(&last); err != nil {
			return err
		}
		switch first := recs[0].Seq; {
		case first <= last:
			return fmt.Errorf("record %d exists: %w", first, sluice.ErrConflict)
		case first != last+1:
			return fmt.Errorf("record %d would leave a gap after %d", first, last)
		}
		rows := make([][]any, len(recs))
		for i := range recs {
			r := &recs[i]
			rows[i] = []any{r.Seq, r.Time, r.Kind, r.RequestID, r.KeyID, r.Team, r.Endpoint, r.Class,
				nonNil(r.ClassReasons), nonNil(r.Candidates), r.Upstream, r.EgressClass, r.DialedAddr,
				r.ClientAddr, r.Decision, r.Reason, r.PrevHash[:], r.Hash[:]}
		}
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"audit"}, auditColumnNames, pgx.CopyFromRows(rows))
		return err
	})
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23505" { // unique_violation: a concurrent writer took the Seqs
			return fmt.Errorf("postgres: append audit: record %d exists: %w", recs[0].Seq, sluice.ErrConflict)
		}
		return fmt.Errorf("postgres: append audit: %w", err)
	}
	return nil
}

// nonNil makes a nil list an empty one, which text[] NOT NULL accepts.
func nonNil(ss []string) []string {
	if ss == nil {
		return []string{}
	}
	return ss
}

// Audit returns the records matching q in ascending Seq order.
func (s *Store) Audit(ctx context.Context, q audit.Query) ([]audit.Record, error) {
	var where []string
	var args []any
	cond := func(c string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(c, "?", "$"+strconv.Itoa(len(args))))
	}
	if q.AfterSeq > 0 {
		cond("seq > ?", q.AfterSeq)
	}
	if !q.From.IsZero() {
		cond("at >= ?", q.From)
	}
	if !q.To.IsZero() {
		cond("at < ?", q.To)
	}
	if q.Kind != "" {
		cond("kind = ?", q.Kind)
	}
	if q.KeyID != "" {
		cond("key_id = ?", q.KeyID)
	}
	if q.Team != "" {
		cond("team = ?", q.Team)
	}
	query := `SELECT ` + auditColumns + ` FROM audit`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	query += ` ORDER BY seq`
	if q.Limit > 0 {
		args = append(args, q.Limit)
		query += ` LIMIT $` + strconv.Itoa(len(args))
	}
	rows, _ := s.pool.Query(ctx, query, args...)
	recs, err := pgx.CollectRows(rows, scanAudit)
	if err != nil {
		return nil, fmt.Errorf("postgres: audit: %w", err)
	}
	return recs, nil
}

// LastAudit returns the record with the highest Seq, or sluice.ErrNotFound.
func (s *Store) LastAudit(ctx context.Context) (audit.Record, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+auditColumns+` FROM audit ORDER BY seq DESC LIMIT 1`)
	r, err := pgx.CollectExactlyOneRow(rows, scanAudit)
	if errors.Is(err, pgx.ErrNoRows) {
		return audit.Record{}, fmt.Errorf("postgres: last audit record: %w", sluice.ErrNotFound)
	}
	if err != nil {
		return audit.Record{}, fmt.Errorf("postgres: last audit record: %w", err)
	}
	return r, nil
}

func scanAudit(row pgx.CollectableRow) (audit.Record, error) {
	var (
		r                audit.Record
		at               time.Time
		prevHash, hashed []byte
	)
	if err := row.Scan(&r.Seq, &at, &r.Kind, &r.RequestID, &r.KeyID, &r.Team, &r.Endpoint, &r.Class, &r.ClassReasons,
		&r.Candidates, &r.Upstream, &r.EgressClass, &r.DialedAddr, &r.ClientAddr, &r.Decision, &r.Reason,
		&prevHash, &hashed); err != nil {
		return r, err
	}
	r.Time = at.UTC()
	if len(prevHash) != len(r.PrevHash) || len(hashed) != len(r.Hash) {
		return r, fmt.Errorf("audit record %d: hashes must be %d bytes", r.Seq, len(r.Hash))
	}
	copy(r.PrevHash[:], prevHash)
	copy(r.Hash[:], hashed)
	return r, nil
}

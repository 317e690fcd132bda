package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/audit"
)

var _ audit.Store = (*Store)(nil)

const auditColumns = `seq, at, kind, request_id, key_id, team, endpoint, class, class_reasons, candidates,
	upstream, egress_class, dialed_addr, client_addr, decision, reason, prev_hash, hash`

// AppendAudit stores recs in one transaction. The first record must follow
// the stored chain's last Seq: an existing Seq is sluice.ErrConflict (another
// writer appended first), a jump forward is refused as a gap.
func (s *Store) AppendAudit(ctx context.Context, recs []audit.Record) error {
	if len(recs) == 0 {
		return nil
	}
	for i := 1; i < len(recs); i++ {
		if recs[i].Seq != recs[i-1].Seq+1 {
			return fmt.Errorf("sqlite: append audit: records %d and %d are not consecutive", recs[i-1].Seq, recs[i].Seq)
		}
	}
	return s.write(ctx, len(recs), func(tx *sql.Tx) error {
		var last int64
		if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM audit`).Scan(&last); err != nil {
			return fmt.Errorf("sqlite: append audit: %w", err)
		}
		switch first := recs[0].Seq; {
		case first <= last:
			return fmt.Errorf("sqlite: append audit: record %d exists: %w", first, sluice.ErrConflict)
		case first != last+1:
			return fmt.Errorf("sqlite: append audit: record %d would leave a gap after %d", first, last)
		}
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO audit (`+auditColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return fmt.Errorf("sqlite: append audit: %w", err)
		}
		defer stmt.Close()
		for i := range recs {
			r := &recs[i]
			reasons, err := jsonList(r.ClassReasons)
			if err != nil {
				return fmt.Errorf("sqlite: append audit %d: %w", r.Seq, err)
			}
			cands, err := jsonList(r.Candidates)
			if err != nil {
				return fmt.Errorf("sqlite: append audit %d: %w", r.Seq, err)
			}
			if _, err := stmt.ExecContext(ctx, r.Seq, micros(r.Time), r.Kind, r.RequestID, r.KeyID, r.Team, r.Endpoint,
				r.Class, reasons, cands, r.Upstream, r.EgressClass, r.DialedAddr, r.ClientAddr, r.Decision, r.Reason,
				r.PrevHash[:], r.Hash[:]); err != nil {
				return fmt.Errorf("sqlite: append audit %d: %w", r.Seq, err)
			}
		}
		return nil
	})
}

// Audit returns the records matching q in ascending Seq order.
func (s *Store) Audit(ctx context.Context, q audit.Query) ([]audit.Record, error) {
	var where []string
	var args []any
	cond := func(c string, v any) {
		where = append(where, c)
		args = append(args, v)
	}
	if q.AfterSeq > 0 {
		cond("seq > ?", q.AfterSeq)
	}
	if !q.From.IsZero() {
		cond("at >= ?", micros(q.From))
	}
	if !q.To.IsZero() {
		cond("at < ?", micros(q.To))
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
		query += ` LIMIT ?`
		args = append(args, q.Limit)
	}
	rows, err := s.reader.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: audit: %w", err)
	}
	defer rows.Close()
	var out []audit.Record
	for rows.Next() {
		r, err := scanAudit(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: audit: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: audit: %w", err)
	}
	return out, nil
}

// LastAudit returns the record with the highest Seq, or sluice.ErrNotFound.
func (s *Store) LastAudit(ctx context.Context) (audit.Record, error) {
	row := s.reader.QueryRowContext(ctx, `SELECT `+auditColumns+` FROM audit ORDER BY seq DESC LIMIT 1`)
	r, err := scanAudit(row)
	if errors.Is(err, sql.ErrNoRows) {
		return audit.Record{}, fmt.Errorf("sqlite: last audit record: %w", sluice.ErrNotFound)
	}
	if err != nil {
		return audit.Record{}, fmt.Errorf("sqlite: last audit record: %w", err)
	}
	return r, nil
}

func scanAudit(row interface{ Scan(...any) error }) (audit.Record, error) {
	var (
		r                audit.Record
		at               int64
		reasons, cands   string
		prevHash, hashed []byte
	)
	if err := row.Scan(&r.Seq, &at, &r.Kind, &r.RequestID, &r.KeyID, &r.Team, &r.Endpoint, &r.Class, &reasons, &cands,
		&r.Upstream, &r.EgressClass, &r.DialedAddr, &r.ClientAddr, &r.Decision, &r.Reason, &prevHash, &hashed); err != nil {
		return r, err
	}
	r.Time = fromMicros(at)
	if err := json.Unmarshal([]byte(reasons), &r.ClassReasons); err != nil {
		return r, fmt.Errorf("audit record %d: class_reasons: %w", r.Seq, err)
	}
	if err := json.Unmarshal([]byte(cands), &r.Candidates); err != nil {
		return r, fmt.Errorf("audit record %d: candidates: %w", r.Seq, err)
	}
	if len(prevHash) != len(r.PrevHash) || len(hashed) != len(r.Hash) {
		return r, fmt.Errorf("audit record %d: hashes must be %d bytes", r.Seq, len(r.Hash))
	}
	copy(r.PrevHash[:], prevHash)
	copy(r.Hash[:], hashed)
	return r, nil
}

// jsonList encodes a string list as a JSON array; nil becomes [].
func jsonList(ss []string) (string, error) {
	if ss == nil {
		ss = []string{}
	}
	b, err := json.Marshal(ss)
	return string(b), err
}

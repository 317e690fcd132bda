package audit

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
)

// Reasons a chain fails to verify, wrapped by *VerifyError.
var (
	// ErrEdited: the record's contents do not match its hash.
	ErrEdited = errors.New("contents do not match the record's hash")
	// ErrMissing: Seq jumps forward; the records in between are missing.
	ErrMissing = errors.New("records before it are missing")
	// ErrReordered: a record comes after one with a higher Seq (moved or
	// duplicated records).
	ErrReordered = errors.New("records are out of order")
	// ErrBrokenLink: the record's PrevHash is not the hash of the record
	// before it, which was replaced (and re-sealed) or is missing.
	ErrBrokenLink = errors.New("previous hash does not match the record before it")
)

// VerifyError reports the first record at which a chain fails.
type VerifyError struct {
	Seq    int64 // the record's Seq, as stored
	Index  int   // the record's position in what was verified, from 0
	Reason error // ErrEdited, ErrMissing, ErrReordered or ErrBrokenLink
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("audit: record %d (position %d): %v", e.Seq, e.Index, e.Reason)
}

func (e *VerifyError) Unwrap() error { return e.Reason }

// Verify checks that recs form an intact chain: each record's hash matches
// its contents, Seqs increase by one, and each PrevHash is the hash of the
// record before. start is the hash the first record must link to: zero for
// the beginning of the chain (whose first Seq must then be 1), or the hash of
// the last record verified earlier, to continue from it.
//
// It returns nil or a *VerifyError naming the first bad record. Records cut
// from the end of the chain cannot be detected here; see the package doc.
func Verify(recs iter.Seq[Record], start [32]byte) error {
	v := verifier{prev: start}
	if start == ([32]byte{}) {
		v.next = 1
	}
	for r := range recs {
		if err := v.add(&r); err != nil {
			return err
		}
	}
	return v.finish()
}

// verifier checks a chain one record at a time.
type verifier struct {
	prev  [32]byte
	next  int64 // Seq the next record must have; 0 when not known yet
	index int
	// gap is a forward jump in Seq, held until the next record shows
	// whether records are missing or the following ones are out of order.
	gap *VerifyError
}

func (v *verifier) add(r *Record) error {
	i := v.index
	v.index++
	if v.gap != nil {
		if r.Seq < v.gap.Seq {
			v.gap.Reason = ErrReordered
		}
		return v.gap
	}
	if r.sum() != r.Hash {
		return &VerifyError{Seq: r.Seq, Index: i, Reason: ErrEdited}
	}
	if v.next != 0 && r.Seq != v.next {
		if r.Seq < v.next {
			return &VerifyError{Seq: r.Seq, Index: i, Reason: ErrReordered}
		}
		v.gap = &VerifyError{Seq: r.Seq, Index: i, Reason: ErrMissing}
		return nil
	}
	if r.PrevHash != v.prev {
		return &VerifyError{Seq: r.Seq, Index: i, Reason: ErrBrokenLink}
	}
	v.prev, v.next = r.Hash, r.Seq+1
	return nil
}

func (v *verifier) finish() error {
	if v.gap != nil {
		return v.gap
	}
	return nil
}

// verifyPage is how many records VerifyStore reads at a time.
const verifyPage = 1000

// VerifyStore reads the whole chain from s, a page at a time, and verifies
// it as Verify does from the start. It returns the last record read: compare
// its Hash with an anchor kept outside the store to detect a cut tail.
func VerifyStore(ctx context.Context, s Store) (last Record, err error) {
	v := verifier{next: 1}
	for {
		page, err := s.Audit(ctx, Query{AfterSeq: last.Seq, Limit: verifyPage})
		if err != nil {
			return last, fmt.Errorf("audit: reading records after %d: %w", last.Seq, err)
		}
		for r := range slices.Values(page) {
			if err := v.add(&r); err != nil {
				return last, err
			}
			last = r
		}
		if len(page) < verifyPage {
			return last, v.finish()
		}
	}
}

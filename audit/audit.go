// Package audit keeps Sluice's audit trail tamper-evident: every record
// carries the SHA-256 hash of its contents and of the record before it, so
// editing, deleting or reordering stored records breaks the chain and Verify
// names the first record affected.
//
// A Chain numbers, seals and appends records to a Store, batching concurrent
// appends into one store write:
//
//	chain := audit.NewChain(store, audit.ChainOptions{})
//	_, err := chain.Append(ctx, audit.Record{Kind: audit.KindRequest, RequestID: id, ...})
//
//	recs, _ := store.Audit(ctx, audit.Query{})
//	err = audit.Verify(slices.Values(recs), [32]byte{}) // *VerifyError on tampering
//
// A chain cannot show that records were cut from its end. Copy the latest
// hash (Chain.Head) somewhere the database's writers cannot reach — a log
// shipper, another system — and compare it with the stored chain.
//
// # Record hash
//
// Hash is SHA-256 over the ASCII line "sluice.audit.v1\n" followed by the
// fields in declaration order, PrevHash last and Hash excluded: Seq as 8
// bytes big-endian; Time as Unix seconds (8 bytes big-endian, two's
// complement) and nanoseconds (4 bytes big-endian); each string as its
// length in unsigned LEB128 (encoding/binary.AppendUvarint) and its bytes;
// each string list as its element count in unsigned LEB128 followed by its
// strings; PrevHash as its 32 bytes. A nil and an empty list hash alike.
package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"time"
)

// Record kinds.
const (
	// KindRequest records a data-plane request the gateway handled.
	KindRequest = "request"
	// KindConnectionRefused records a connection closed by the ingress
	// allowlist before any request was read.
	KindConnectionRefused = "connection_refused"
	// KindRequestRefused records a request refused by policy (key, class,
	// egress) before it reached an upstream.
	KindRequestRefused = "request_refused"
)

// Record is one audit event. Seq, PrevHash and Hash are set by Seal (via
// Chain); the rest describes the event.
type Record struct {
	Seq          int64     // position in the chain, from 1, without gaps
	Time         time.Time // when the event happened; Seal keeps microseconds, UTC
	Kind         string    // one of the Kind* constants
	RequestID    string
	KeyID        string
	Team         string
	Endpoint     string
	Class        string   // data class the request was given
	ClassReasons []string // why it was given that class
	Candidates   []string // upstreams considered for it
	Upstream     string   // upstream chosen
	EgressClass  string   // egress policy class of the upstream's address
	DialedAddr   string   // address actually dialed
	ClientAddr   string   // effective client address
	Decision     string   // e.g. "allowed", "refused"
	Reason       string   // why, for a refusal
	PrevHash     [32]byte // Hash of the record before; zero for the first
	Hash         [32]byte // SHA-256 of the canonical encoding, see the package doc
}

// Seal links r to the record before it, whose hash is prev, and sets r.Hash.
// It first rounds r.Time down to the microsecond, in UTC, as SQL databases
// store it, so that a record read back from a store still verifies.
func (r *Record) Seal(prev [32]byte) {
	r.Time = r.Time.UTC().Truncate(time.Microsecond)
	r.PrevHash = prev
	r.Hash = r.sum()
}

// sum computes the hash r should carry.
func (r *Record) sum() [32]byte {
	return sha256.Sum256(r.appendCanonical(make([]byte, 0, 512)))
}

const domain = "sluice.audit.v1\n"

// appendCanonical appends the encoding described in the package doc.
func (r *Record) appendCanonical(b []byte) []byte {
	b = append(b, domain...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Seq))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Time.Unix()))
	b = binary.BigEndian.AppendUint32(b, uint32(r.Time.Nanosecond()))
	for _, s := range []string{r.Kind, r.RequestID, r.KeyID, r.Team, r.Endpoint, r.Class} {
		b = appendString(b, s)
	}
	b = appendStrings(b, r.ClassReasons)
	b = appendStrings(b, r.Candidates)
	for _, s := range []string{r.Upstream, r.EgressClass, r.DialedAddr, r.ClientAddr, r.Decision, r.Reason} {
		b = appendString(b, s)
	}
	return append(b, r.PrevHash[:]...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendStrings(b []byte, ss []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = appendString(b, s)
	}
	return b
}

package audit

import (
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// sampleChain returns n sealed records with every field set.
func sampleChain(n int) []Record {
	recs := make([]Record, n)
	var prev [32]byte
	for i := range recs {
		recs[i] = Record{
			Seq:          int64(i + 1),
			Time:         t0.Add(time.Duration(i) * time.Second),
			Kind:         KindRequest,
			RequestID:    fmt.Sprintf("req-%d", i),
			KeyID:        "k1",
			Team:         "team-a",
			Endpoint:     "gpt",
			Class:        "internal",
			ClassReasons: []string{"email"},
			Candidates:   []string{"a", "b"},
			Upstream:     "a",
			EgressClass:  "private",
			DialedAddr:   "127.0.0.1:443",
			ClientAddr:   "127.0.0.1:5000",
			Decision:     "allowed",
			Reason:       "",
		}
		recs[i].Seal(prev)
		prev = recs[i].Hash
	}
	return recs
}

func verify(recs []Record, start [32]byte) error { return Verify(slices.Values(recs), start) }

// wantVerifyError checks err is a *VerifyError for seq at index, for reason.
func wantVerifyError(t *testing.T, err error, seq int64, index int, reason error) {
	t.Helper()
	var ve *VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("Verify() = %v, want a *VerifyError", err)
	}
	if ve.Seq != seq || ve.Index != index || !errors.Is(err, reason) {
		t.Fatalf("Verify() = %v, want record %d at position %d: %v", err, seq, index, reason)
	}
}

func TestVerifyIntact(t *testing.T) {
	recs := sampleChain(10)
	if err := verify(recs, [32]byte{}); err != nil {
		t.Fatalf("Verify(intact chain) = %v", err)
	}
	if err := verify(nil, [32]byte{}); err != nil {
		t.Fatalf("Verify(empty) = %v", err)
	}
	// Continuing from a verified prefix.
	if err := verify(recs[4:], recs[3].Hash); err != nil {
		t.Fatalf("Verify(suffix, hash of the prefix) = %v", err)
	}
	wantVerifyError(t, verify(recs[4:], recs[2].Hash), 5, 0, ErrBrokenLink)
	// From the genesis, the chain must start at 1.
	wantVerifyError(t, verify(recs[4:], [32]byte{}), 5, 0, ErrMissing)
}

// mutate changes v, whatever its type, so that it differs.
func mutate(t *testing.T, v reflect.Value) {
	switch v.Kind() {
	case reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.String:
		v.SetString(v.String() + "x")
	case reflect.Slice:
		v.Set(reflect.Append(v, reflect.ValueOf("x")))
	case reflect.Array:
		v.Index(7).SetUint(v.Index(7).Uint() ^ 1)
	case reflect.Struct: // time.Time
		v.Set(reflect.ValueOf(v.Interface().(time.Time).Add(time.Nanosecond)))
	default:
		t.Fatalf("no mutation for %s", v.Type())
	}
}

// TestVerifyDetectsEditOfEveryField edits each field of Record in turn —
// including fields added later, which must then be hashed too.
func TestVerifyDetectsEditOfEveryField(t *testing.T) {
	typ := reflect.TypeFor[Record]()
	for f := range typ.NumField() {
		for _, k := range []int{0, 3, 6} {
			name := typ.Field(f).Name
			t.Run(fmt.Sprintf("%s/record%d", name, k+1), func(t *testing.T) {
				recs := sampleChain(7)
				mutate(t, reflect.ValueOf(&recs[k]).Elem().Field(f))
				wantVerifyError(t, verify(recs, [32]byte{}), recs[k].Seq, k, ErrEdited)
			})
		}
	}
}

func TestVerifyDetectsEditedListElement(t *testing.T) {
	recs := sampleChain(3)
	recs[1].Candidates[0] = "z"
	wantVerifyError(t, verify(recs, [32]byte{}), 2, 1, ErrEdited)
	// Moving a string between neighbouring fields keeps the concatenation
	// but not the length-prefixed encoding.
	recs = sampleChain(3)
	recs[1].Team, recs[1].Endpoint = "team-ag", "pt"
	wantVerifyError(t, verify(recs, [32]byte{}), 2, 1, ErrEdited)
}

func TestVerifyDetectsResealedRecord(t *testing.T) {
	recs := sampleChain(5)
	recs[2].Decision = "refused"
	recs[2].Seal(recs[1].Hash) // a forger who can hash
	wantVerifyError(t, verify(recs, [32]byte{}), 4, 3, ErrBrokenLink)
}

func TestVerifyDetectsDeletion(t *testing.T) {
	for k := range 4 { // the last record is the cut-tail case below
		recs := slices.Delete(sampleChain(5), k, k+1)
		wantVerifyError(t, verify(recs, [32]byte{}), int64(k+2), k, ErrMissing)
	}
	// Several records missing.
	recs := slices.Delete(sampleChain(8), 2, 5)
	wantVerifyError(t, verify(recs, [32]byte{}), 6, 2, ErrMissing)
}

// TestVerifyCannotSeeCutTail pins the documented limit: only an anchor kept
// elsewhere shows that the newest records were removed.
func TestVerifyCannotSeeCutTail(t *testing.T) {
	recs := sampleChain(5)
	if err := verify(recs[:4], [32]byte{}); err != nil {
		t.Fatalf("Verify(chain without its last record) = %v", err)
	}
	if recs[3].Hash == recs[4].Hash {
		t.Fatal("anchor would not show the cut")
	}
}

func TestVerifyDetectsReordering(t *testing.T) {
	for _, sw := range [][2]int{{0, 1}, {2, 3}, {3, 4}, {0, 4}, {1, 3}} {
		recs := sampleChain(5)
		i, j := sw[0], sw[1]
		recs[i], recs[j] = recs[j], recs[i]
		wantVerifyError(t, verify(recs, [32]byte{}), int64(j+1), i, ErrReordered)
	}
	// A record replayed later.
	recs := sampleChain(4)
	recs = append(recs, recs[1])
	wantVerifyError(t, verify(recs, [32]byte{}), 2, 4, ErrReordered)
}

func TestSealNormalisesTime(t *testing.T) {
	local := time.Date(2026, 3, 1, 14, 0, 0, 123456789, time.FixedZone("Z", 2*3600))
	a := Record{Seq: 1, Time: local}
	a.Seal([32]byte{})
	if a.Time.Location() != time.UTC || a.Time.Nanosecond() != 123456000 {
		t.Errorf("sealed Time = %v, want UTC to the microsecond", a.Time)
	}
	b := Record{Seq: 1, Time: local.In(time.UTC).Add(-789 * time.Nanosecond)}
	b.Seal([32]byte{})
	if a.Hash != b.Hash {
		t.Error("the same instant in another zone hashes differently")
	}
}

// TestHashGolden pins the canonical encoding: external verifiers depend on
// it, so a change here is a format change (bump the domain string). The
// expected hash was computed independently from the package doc's
// description of the encoding.
func TestHashGolden(t *testing.T) {
	r := Record{
		Seq: 7, Time: time.Date(2026, 3, 1, 12, 0, 0, 5000, time.UTC), Kind: KindRequestRefused,
		RequestID: "r", KeyID: "k", Team: "t", Endpoint: "e", Class: "secret",
		ClassReasons: []string{"card", ""}, Candidates: nil,
		Upstream: "u", EgressClass: "public", DialedAddr: "d", ClientAddr: "c", Decision: "refused", Reason: "class",
		PrevHash: [32]byte{1, 2, 3},
	}
	r.Seal(r.PrevHash)
	const want = "a61b5ad5da65ddb35e4a7c9a049e1fbde5a3c259f582159890e6027ea7a828cf"
	if got := hex.EncodeToString(r.Hash[:]); got != want {
		t.Errorf("hash = %s, want %s", got, want)
	}
}

// TestVerifyProperties: an untouched chain verifies, in one piece or split
// anywhere; any single tampering fails, naming the right record.
func TestVerifyProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(2, 30).Draw(t, "n")
		recs := make([]Record, n)
		var prev [32]byte
		for i := range recs {
			recs[i] = Record{
				Seq:          int64(i + 1),
				Time:         t0.Add(time.Duration(rapid.Int64Range(0, 1e15).Draw(t, "time"))),
				Kind:         rapid.SampledFrom([]string{KindRequest, KindConnectionRefused, KindRequestRefused}).Draw(t, "kind"),
				RequestID:    rapid.String().Draw(t, "req"),
				Team:         rapid.StringN(0, 4, -1).Draw(t, "team"),
				ClassReasons: rapid.SliceOfN(rapid.StringN(0, 3, -1), 0, 3).Draw(t, "reasons"),
				Reason:       rapid.String().Draw(t, "reason"),
			}
			recs[i].Seal(prev)
			prev = recs[i].Hash
		}
		if err := verify(recs, [32]byte{}); err != nil {
			t.Fatalf("intact chain: %v", err)
		}
		cut := rapid.IntRange(0, n).Draw(t, "cut")
		start := [32]byte{}
		if cut > 0 {
			start = recs[cut-1].Hash
		}
		if err := verify(recs[:cut], [32]byte{}); err != nil {
			t.Fatalf("prefix: %v", err)
		}
		if err := verify(recs[cut:], start); err != nil {
			t.Fatalf("suffix from the prefix's hash: %v", err)
		}

		k := rapid.IntRange(0, n-2).Draw(t, "k") // not the last: a cut tail is invisible
		tampered := slices.Clone(recs)
		var seq int64
		var index int
		var reason error
		switch op := rapid.IntRange(0, 4).Draw(t, "op"); op {
		case 0: // edit a field
			f := rapid.IntRange(0, reflect.TypeFor[Record]().NumField()-1).Draw(t, "field")
			tampered[k].ClassReasons = slices.Clone(tampered[k].ClassReasons)
			mutate(nil, reflect.ValueOf(&tampered[k]).Elem().Field(f))
			seq, index, reason = tampered[k].Seq, k, ErrEdited
		case 1: // delete
			tampered = slices.Delete(tampered, k, k+1)
			seq, index, reason = int64(k+2), k, ErrMissing
		case 2: // swap with a later record
			j := rapid.IntRange(k+1, n-1).Draw(t, "j")
			tampered[k], tampered[j] = tampered[j], tampered[k]
			seq, index, reason = int64(j+1), k, ErrReordered
		case 3: // edit and re-seal
			tampered[k].Reason += "!"
			tampered[k].Seal(tampered[k].PrevHash)
			seq, index, reason = int64(k+2), k+1, ErrBrokenLink
		case 4: // insert a forged record, sealed onto its predecessor
			forged := Record{Seq: int64(k + 2), Time: t0, Kind: KindRequest}
			forged.Seal(recs[k].Hash)
			tampered = slices.Insert(tampered, k+1, forged)
			seq, index, reason = int64(k+2), k+2, ErrReordered
		}
		err := verify(tampered, [32]byte{})
		var ve *VerifyError
		if !errors.As(err, &ve) || ve.Seq != seq || ve.Index != index || !errors.Is(err, reason) {
			t.Fatalf("Verify(tampered) = %v, want record %d at position %d: %v", err, seq, index, reason)
		}
	})
}

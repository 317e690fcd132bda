package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluice-gateway/sluice/audit"
	"github.com/sluice-gateway/sluice/config"
)

// runAudit is `sluice audit verify` and `sluice audit [flags]`.
func runAudit(ctx context.Context, args []string) error { return auditCommand(ctx, args, os.Stdout) }

func auditCommand(ctx context.Context, args []string, w io.Writer) error {
	if len(args) > 0 && args[0] == "verify" {
		return auditVerify(ctx, args[1:], w)
	}
	return auditList(ctx, args, w)
}

// openAudit loads the config and opens the store's audit trail.
func openAudit(ctx context.Context, path string) (*config.Config, audit.Store, func(), error) {
	cfg, _, err := loadConfig(path)
	if err != nil {
		return nil, nil, nil, err
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	as, ok := st.(audit.Store)
	if !ok {
		st.Close()
		return nil, nil, nil, errors.New("the store keeps no audit trail")
	}
	return cfg, as, func() { st.Close() }, nil
}

// auditVerify checks the whole chain and, with --anchor SEQ:HASH (a head
// printed earlier and kept elsewhere), that the chain still holds that
// record, so records cut from its end are noticed too.
func auditVerify(ctx context.Context, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	path := configFlag(fs)
	anchor := fs.String("anchor", "", "SEQ:HASH of a head printed by an earlier verify, kept outside the database")
	if err := fs.Parse(args); err != nil {
		return err
	}
	_, as, closeStore, err := openAudit(ctx, *path)
	if err != nil {
		return err
	}
	defer closeStore()
	last, err := audit.VerifyStore(ctx, as)
	if err != nil {
		return fmt.Errorf("the audit trail does not verify: %w", err)
	}
	if *anchor != "" {
		if err := checkAnchor(ctx, as, *anchor, last.Seq); err != nil {
			return err
		}
	}
	if last.Seq == 0 {
		fmt.Fprintln(w, "ok: the audit trail is empty")
		return nil
	}
	fmt.Fprintf(w, "ok: %d records verified; head %d:%s\n", last.Seq, last.Seq, hex.EncodeToString(last.Hash[:]))
	return nil
}

func checkAnchor(ctx context.Context, as audit.Store, anchor string, head int64) error {
	seqStr, hashStr, ok := strings.Cut(anchor, ":")
	seq, err := strconv.ParseInt(seqStr, 10, 64)
	want, herr := hex.DecodeString(hashStr)
	if !ok || err != nil || seq < 1 || herr != nil || len(want) != 32 {
		return fmt.Errorf("--anchor %q: want SEQ:HASH as printed by verify", anchor)
	}
	if seq > head {
		return fmt.Errorf("the audit trail ends at record %d, before the anchored record %d: records were cut from its end", head, seq)
	}
	recs, err := as.Audit(ctx, audit.Query{AfterSeq: seq - 1, Limit: 1})
	if err != nil {
		return err
	}
	if len(recs) != 1 || recs[0].Seq != seq || hex.EncodeToString(recs[0].Hash[:]) != hex.EncodeToString(want) {
		return fmt.Errorf("record %d is not the anchored one: the trail was rewritten from there on", seq)
	}
	return nil
}

// Destinations of a request, as auditList judges them.
const (
	destPrivate    = "private"     // private egress, dialed inside the private prefixes (or in-process)
	destNonPrivate = "NON-PRIVATE" // public or undeclared egress, or dialed outside the private prefixes
	destUnproven   = "unproven"    // private egress, but no dialed address recorded
	destNone       = "-"           // never sent
)

// destination judges where a request record went, against the private
// prefixes of the current configuration.
func destination(r *audit.Record, private []netip.Prefix) string {
	if r.Upstream == "" || r.Kind != audit.KindRequest {
		return destNone
	}
	switch r.EgressClass {
	case "in-process":
		return destPrivate
	case "private":
	default:
		return destNonPrivate
	}
	if r.DialedAddr == "" {
		return destUnproven
	}
	ap, err := netip.ParseAddrPort(r.DialedAddr)
	if err != nil {
		return destNonPrivate
	}
	a := ap.Addr().Unmap()
	for _, p := range private {
		if p.Contains(a) {
			return destPrivate
		}
	}
	return destNonPrivate
}

type auditRow struct {
	Seq          int64     `json:"seq"`
	Time         time.Time `json:"time"`
	Kind         string    `json:"kind"`
	RequestID    string    `json:"request_id,omitempty"`
	KeyID        string    `json:"key_id,omitempty"`
	Team         string    `json:"team,omitempty"`
	Endpoint     string    `json:"endpoint,omitempty"`
	Class        string    `json:"class,omitempty"`
	ClassReasons []string  `json:"class_reasons,omitempty"`
	Candidates   []string  `json:"candidates,omitempty"`
	Upstream     string    `json:"upstream,omitempty"`
	EgressClass  string    `json:"egress_class,omitempty"`
	DialedAddr   string    `json:"dialed_addr,omitempty"`
	Destination  string    `json:"destination"`
	ClientAddr   string    `json:"client_addr,omitempty"`
	Decision     string    `json:"decision,omitempty"`
	Reason       string    `json:"reason,omitempty"`
	Hash         string    `json:"hash"`
}

type auditSummary struct {
	Chain      string `json:"chain"` // "verified" or why not
	Head       string `json:"head,omitempty"`
	Records    int    `json:"records"`
	Sent       int    `json:"sent"`
	Refused    int    `json:"refused"`
	NonPrivate int    `json:"non_private"`
	Unproven   int    `json:"unproven"`
	Statement  string `json:"statement"`
}

// auditList lists audit records by class and time and says whether any
// request among them went to a non-private destination. The chain is
// verified first; a trail that does not verify proves nothing, so the
// command then fails after listing.
func auditList(ctx context.Context, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: sluice audit verify [--anchor SEQ:HASH]\n       sluice audit [--class C[,C]] [--from T] [--to T] [--kind K] [--format table|json]")
		fs.PrintDefaults()
	}
	path := configFlag(fs)
	classes := fs.String("class", "", "comma-separated data classes to list (default: all)")
	from := fs.String("from", "", "start (inclusive): 2026-11-01 or RFC 3339")
	to := fs.String("to", "", "end (exclusive): 2026-12-01 or RFC 3339")
	kind := fs.String("kind", "", "request, request_refused or connection_refused (default: all)")
	format := fs.String("format", "table", "table or json")
	verify := fs.Bool("verify", true, "verify the whole chain first")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (did you mean `sluice audit verify`?)", fs.Arg(0))
	}
	if *format != "table" && *format != "json" {
		return fmt.Errorf("--format %q: use table or json", *format)
	}
	q := audit.Query{Kind: *kind}
	var err error
	if q.From, err = parseTime(*from); err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	if q.To, err = parseTime(*to); err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	var want []string
	for _, c := range strings.Split(*classes, ",") {
		if c = strings.TrimSpace(c); c != "" {
			want = append(want, c)
		}
	}
	cfg, as, closeStore, err := openAudit(ctx, *path)
	if err != nil {
		return err
	}
	defer closeStore()
	policy, err := cfg.Egress.Policy()
	if err != nil {
		return fmt.Errorf("egress: %w", err)
	}

	sum := auditSummary{Chain: "not checked"}
	var verr error
	if *verify {
		last, err := audit.VerifyStore(ctx, as)
		if err != nil {
			verr = fmt.Errorf("the audit trail does not verify: %w", err)
			sum.Chain = "DOES NOT VERIFY: " + err.Error()
		} else {
			sum.Chain = "verified"
			sum.Head = strconv.FormatInt(last.Seq, 10) + ":" + hex.EncodeToString(last.Hash[:])
		}
	}

	var rows []auditRow
	var nonPrivate []string
	for page := q; ; {
		page.Limit = 1000
		recs, err := as.Audit(ctx, page)
		if err != nil {
			return err
		}
		for i := range recs {
			r := &recs[i]
			if len(want) > 0 && !slices.Contains(want, r.Class) {
				continue
			}
			d := destination(r, policy.PrivatePrefixes)
			switch d {
			case destNone:
				if r.Kind != audit.KindConnectionRefused {
					sum.Refused++
				}
			case destNonPrivate:
				sum.Sent++
				sum.NonPrivate++
				nonPrivate = append(nonPrivate, fmt.Sprintf("record %d (%s, %s, %s)", r.Seq, r.Upstream, r.EgressClass, orDash(r.DialedAddr)))
			case destUnproven:
				sum.Sent++
				sum.Unproven++
			default:
				sum.Sent++
			}
			rows = append(rows, auditRow{Seq: r.Seq, Time: r.Time, Kind: r.Kind, RequestID: r.RequestID, KeyID: r.KeyID,
				Team: r.Team, Endpoint: r.Endpoint, Class: r.Class, ClassReasons: r.ClassReasons, Candidates: r.Candidates,
				Upstream: r.Upstream, EgressClass: r.EgressClass, DialedAddr: r.DialedAddr, Destination: d,
				ClientAddr: r.ClientAddr, Decision: r.Decision, Reason: r.Reason, Hash: hex.EncodeToString(r.Hash[:])})
		}
		if len(recs) < page.Limit {
			break
		}
		page.AfterSeq = recs[len(recs)-1].Seq
	}
	sum.Records = len(rows)
	sum.Statement = statement(sum, want, q, nonPrivate)

	if *format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if rows == nil {
			rows = []auditRow{}
		}
		if err := enc.Encode(struct {
			Summary auditSummary `json:"summary"`
			Records []auditRow   `json:"records"`
		}{sum, rows}); err != nil {
			return err
		}
		return verr
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tKIND\tCLASS\tENDPOINT\tKEY\tCLIENT\tUPSTREAM\tEGRESS\tDIALED\tDESTINATION\tDECISION\tREASON")
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Seq, r.Time.Format(time.RFC3339), r.Kind,
			orDash(r.Class), orDash(r.Endpoint), orDash(r.KeyID), orDash(r.ClientAddr), orDash(r.Upstream), orDash(r.EgressClass),
			orDash(r.DialedAddr), r.Destination, orDash(r.Decision), orDash(r.Reason))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nchain: %s", sum.Chain)
	if sum.Head != "" {
		fmt.Fprintf(w, " (head %s)", sum.Head)
	}
	fmt.Fprintf(w, "\n%s\n", sum.Statement)
	return verr
}

// statement says, in one sentence, whether the listed traffic stayed
// private.
func statement(s auditSummary, classes []string, q audit.Query, nonPrivate []string) string {
	what := "request"
	if s.Sent != 1 {
		what = "requests"
	}
	if len(classes) > 0 {
		what += " of class " + strings.Join(classes, " or ")
	}
	span := ""
	if !q.From.IsZero() {
		span += " from " + q.From.Format(time.RFC3339)
	}
	if !q.To.IsZero() {
		span += " until " + q.To.Format(time.RFC3339)
	}
	verb := "were"
	if s.Sent == 1 {
		verb = "was"
	}
	base := fmt.Sprintf("%d %s%s %s sent to an upstream, %d refused.", s.Sent, what, span, verb, s.Refused)
	switch {
	case s.NonPrivate > 0:
		return base + fmt.Sprintf(" %d went to a NON-PRIVATE destination: %s.", s.NonPrivate, strings.Join(nonPrivate, "; "))
	case s.Unproven > 0:
		return base + fmt.Sprintf(" None went to a non-private destination, but %d private-egress requests have no dialed address recorded.", s.Unproven)
	case s.Sent == 0:
		return base + " None went to any upstream."
	}
	return base + " All went to private destinations: private egress, and every dialed address inside the private prefixes."
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

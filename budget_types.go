package sluice

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Budgets cap what a key, a team, an endpoint or a team on one endpoint may
// spend per calendar period. Admission reserves a request's worst-case
// cost against every budget that applies (two-phase, like TigerBeetle's
// pending transfers); the usage record settles it in the same transaction
// that inserts the record, so the ledger stays the only source of truth for
// spend. See package budget for the engine the gateway drives.

// BudgetScope says what a budget is on.
type BudgetScope string

const (
	ScopeKey          BudgetScope = "key"           // Subject is a key id
	ScopeTeam         BudgetScope = "team"          // Subject is a team
	ScopeEndpoint     BudgetScope = "endpoint"      // Subject is an endpoint name
	ScopeTeamEndpoint BudgetScope = "team_endpoint" // Subject is TeamEndpoint(team, endpoint)
)

// BudgetPeriod is how often a budget resets.
type BudgetPeriod string

const (
	PeriodDay      BudgetPeriod = "day"
	PeriodWeek     BudgetPeriod = "week" // starts on Monday
	PeriodMonth    BudgetPeriod = "month"
	PeriodLifetime BudgetPeriod = "lifetime" // never resets
)

// MaxBudgetMicros is the largest budget limit accepted (one billion USD);
// it keeps every sum and percentage computed on budgets far from overflow.
const MaxBudgetMicros = 1_000_000_000 * 1_000_000

// Sentinel errors of the budget engine. Check with errors.Is.
var (
	// ErrBudgetExceeded is matched by every *BudgetExceededError.
	ErrBudgetExceeded = errors.New("budget exceeded")
	// ErrImmutable means an update tried to change a budget's scope,
	// subject, period or time zone; delete and create it instead.
	ErrImmutable = errors.New("scope, subject, period and time zone of a budget cannot change")
)

// LifetimeStart is the period start of every lifetime budget.
var LifetimeStart = time.Unix(0, 0).UTC()

// Budget caps spend per period. Its Scope, Subject, Period and TimeZone
// are fixed when it is created; its limit, hardness and alert thresholds
// may change.
type Budget struct {
	ID      string // chosen by the operator, e.g. "ml-monthly"
	Scope   BudgetScope
	Subject string // key id, team, endpoint, or TeamEndpoint(team, endpoint)
	Period  BudgetPeriod
	// TimeZone is the IANA name of the zone whose calendar the periods
	// follow. Empty means UTC.
	TimeZone    string
	LimitMicros int64
	// Hard budgets refuse reservations that could exceed the limit; soft
	// ones only alert.
	Hard bool
	// AlertThresholds are percentages of the limit (e.g. 50, 80, 100);
	// each fires once per period when settled spend reaches it.
	AlertThresholds []int
	CreatedAt       time.Time
}

// TeamEndpoint is the Subject of a ScopeTeamEndpoint budget. A team whose
// name contains "/" can collide with another pair; team names should not.
func TeamEndpoint(team, endpoint string) string { return team + "/" + endpoint }

// Validate reports what is wrong with b, if anything.
func (b *Budget) Validate() error {
	var errs []error
	if b.ID == "" || len(b.ID) > 200 || !storable(b.ID) {
		errs = append(errs, errors.New("id must be 1 to 200 bytes of UTF-8 without NUL"))
	}
	if !storable(b.Subject) {
		errs = append(errs, errors.New("subject must be UTF-8 without NUL"))
	}
	switch b.Scope {
	case ScopeKey, ScopeTeam, ScopeEndpoint:
	case ScopeTeamEndpoint:
		if t, e, ok := strings.Cut(b.Subject, "/"); !ok || t == "" || e == "" {
			errs = append(errs, errors.New(`team_endpoint subject must be "team/endpoint"`))
		}
	default:
		errs = append(errs, fmt.Errorf("unknown scope %q", b.Scope))
	}
	if b.Subject == "" {
		errs = append(errs, errors.New("empty subject"))
	}
	switch b.Period {
	case PeriodDay, PeriodWeek, PeriodMonth, PeriodLifetime:
	default:
		errs = append(errs, fmt.Errorf("unknown period %q", b.Period))
	}
	if _, err := location(b.TimeZone); err != nil {
		errs = append(errs, fmt.Errorf("time zone: %w", err))
	}
	if b.LimitMicros < 0 || b.LimitMicros > MaxBudgetMicros {
		errs = append(errs, fmt.Errorf("limit must be between 0 and %d micro-dollars", int64(MaxBudgetMicros)))
	}
	for _, t := range b.AlertThresholds {
		if t < 1 || t > 1000 {
			errs = append(errs, fmt.Errorf("alert threshold %d%% is not between 1 and 1000", t))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("budget %q: %w", b.ID, err)
	}
	return nil
}

// storable reports whether s can be kept as text by every store.
func storable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// AppliesTo reports whether b covers a request with the given subjects.
func (b *Budget) AppliesTo(s BudgetSubjects) bool {
	for _, t := range s.Targets() {
		if t.Scope == b.Scope && t.Subject == b.Subject {
			return true
		}
	}
	return false
}

// PeriodAt returns the period of b that contains t: its start and the
// start of the next one (the reset time). Days start at midnight, weeks
// on Monday at midnight, months on the first at midnight, all in b's time
// zone; if a zone skips midnight, the period starts when the day does. A
// lifetime period starts at LifetimeStart and never resets (zero end).
func (b *Budget) PeriodAt(t time.Time) (start, end time.Time, err error) {
	loc, err := location(b.TimeZone)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("budget %q: %w", b.ID, err)
	}
	lt := t.In(loc)
	y, m, d := lt.Date()
	switch b.Period {
	case PeriodDay:
		start, end = time.Date(y, m, d, 0, 0, 0, 0, loc), time.Date(y, m, d+1, 0, 0, 0, 0, loc)
	case PeriodWeek:
		back := (int(lt.Weekday()) + 6) % 7 // days since Monday
		start, end = time.Date(y, m, d-back, 0, 0, 0, 0, loc), time.Date(y, m, d-back+7, 0, 0, 0, 0, loc)
	case PeriodMonth:
		start, end = time.Date(y, m, 1, 0, 0, 0, 0, loc), time.Date(y, m+1, 1, 0, 0, 0, 0, loc)
	case PeriodLifetime:
		return LifetimeStart, time.Time{}, nil
	default:
		return time.Time{}, time.Time{}, fmt.Errorf("budget %q: unknown period %q", b.ID, b.Period)
	}
	// Stores keep microseconds; a zone offset never has finer digits, so
	// this only normalises the location.
	return start.UTC(), end.UTC(), nil
}

// ThresholdsReached returns the alert thresholds that settled spend has
// reached: those t with settled >= t% of the limit.
func (b *Budget) ThresholdsReached(settled int64) []int {
	var out []int
	for _, t := range b.AlertThresholds {
		// limit ≤ 1e15 and t ≤ 1000, so neither product overflows for
		// settled below about 9e16 micro-dollars.
		if settled*100 >= b.LimitMicros*int64(t) {
			out = append(out, t)
		}
	}
	return out
}

var locations sync.Map // IANA name → *time.Location

// location loads a time zone once. Empty means UTC.
func location(name string) (*time.Location, error) {
	if name == "" || name == "UTC" {
		return time.UTC, nil
	}
	if l, ok := locations.Load(name); ok {
		return l.(*time.Location), nil
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	locations.Store(name, l)
	return l, nil
}

// BudgetSubjects names who a request is charged to.
type BudgetSubjects struct {
	KeyID, Team, Endpoint string
}

// SubjectsOf returns the subjects a usage record is charged to.
func SubjectsOf(r *UsageRecord) BudgetSubjects {
	return BudgetSubjects{KeyID: r.KeyID, Team: r.Team, Endpoint: r.Endpoint}
}

// BudgetTarget is one (scope, subject) pair a budget can be on.
type BudgetTarget struct {
	Scope   BudgetScope
	Subject string
}

// Targets lists the (scope, subject) pairs whose budgets apply to a
// request with these subjects. Empty subjects match nothing.
func (s BudgetSubjects) Targets() []BudgetTarget {
	ts := make([]BudgetTarget, 0, 4)
	if s.KeyID != "" {
		ts = append(ts, BudgetTarget{ScopeKey, s.KeyID})
	}
	if s.Team != "" {
		ts = append(ts, BudgetTarget{ScopeTeam, s.Team})
	}
	if s.Endpoint != "" {
		ts = append(ts, BudgetTarget{ScopeEndpoint, s.Endpoint})
	}
	if s.Team != "" && s.Endpoint != "" {
		ts = append(ts, BudgetTarget{ScopeTeamEndpoint, TeamEndpoint(s.Team, s.Endpoint)})
	}
	return ts
}

// Reservation asks to hold a request's worst-case cost against every
// budget that applies to it until the request's usage record settles it.
type Reservation struct {
	RequestID string // the id the request's usage record will carry
	// Owner identifies the process that made the reservation (for
	// diagnosing reservations left behind by a crash).
	Owner        string
	Subjects     BudgetSubjects
	AmountMicros int64 // worst-case cost
	// ExpiresAt is when the reconciler may release the reservation if it
	// has not been settled or released. It must outlast the request.
	ExpiresAt time.Time
}

// BudgetExceededError is the refusal of a reservation by a hard budget.
type BudgetExceededError struct {
	BudgetID    string
	Scope       BudgetScope
	Subject     string
	Period      BudgetPeriod
	PeriodStart time.Time
	ResetAt     time.Time // zero for a lifetime budget
	LimitMicros int64
	// SettledMicros and ReservedMicros are the period's spend and holds
	// when the reservation was refused; RequestedMicros is what it asked.
	SettledMicros, ReservedMicros, RequestedMicros int64
}

func (e *BudgetExceededError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s budget %q on %s %q is exhausted (%s of %s spent or in flight",
		e.Period, e.BudgetID, strings.ReplaceAll(string(e.Scope), "_", " and "), e.Subject,
		FormatUSD(e.SettledMicros+e.ReservedMicros), FormatUSD(e.LimitMicros))
	fmt.Fprintf(&b, ", this request may cost up to %s)", FormatUSD(e.RequestedMicros))
	if e.ResetAt.IsZero() {
		b.WriteString("; it does not reset")
	} else {
		fmt.Fprintf(&b, "; it resets at %s", e.ResetAt.UTC().Format(time.RFC3339))
	}
	return b.String()
}

// Is makes errors.Is(err, ErrBudgetExceeded) true.
func (e *BudgetExceededError) Is(target error) bool { return target == ErrBudgetExceeded }

// FormatUSD formats micro-dollars as dollars with at least two decimals
// and no trailing zeros beyond them, e.g. "$1.50", "$0.000123".
func FormatUSD(micros int64) string {
	sign := ""
	u := uint64(micros)
	if micros < 0 {
		sign, u = "-", uint64(-micros)
	}
	frac := strings.TrimRight(fmt.Sprintf("%06d", u%1_000_000), "0")
	for len(frac) < 2 {
		frac += "0"
	}
	return fmt.Sprintf("%s$%d.%s", sign, u/1_000_000, frac)
}

// BudgetStatus is a budget's spend in the period containing a given time.
type BudgetStatus struct {
	Budget
	PeriodStart    time.Time
	ResetAt        time.Time // zero for a lifetime budget
	SettledMicros  int64
	ReservedMicros int64
}

// RemainingMicros is what may still be reserved in the period: the limit
// less settled and reserved spend, never below zero.
func (s *BudgetStatus) RemainingMicros() int64 {
	return max(0, s.LimitMicros-s.SettledMicros-s.ReservedMicros)
}

// BudgetAlert is one alert threshold reached in one period of a budget.
type BudgetAlert struct {
	BudgetID      string
	Scope         BudgetScope
	Subject       string
	Period        BudgetPeriod
	PeriodStart   time.Time
	ResetAt       time.Time // zero for a lifetime budget
	Threshold     int       // percent of the limit
	LimitMicros   int64
	SettledMicros int64 // settled spend when the threshold was reached
	Hard          bool
	// FiredAt is the arrival time of the latest request whose settlement
	// reached the threshold.
	FiredAt time.Time
}

// ExpiredReservation describes a reservation the reconciler released.
type ExpiredReservation struct {
	RequestID    string
	Owner        string
	AmountMicros int64
	ExpiresAt    time.Time
	// HadUsage is true when a usage record with the request id existed.
	// Settlement deletes the reservation it settles, so this means the
	// record was inserted before the reservation was made; its cost was
	// charged when it was inserted and only the hold is released.
	HadUsage bool
}

// BudgetStore keeps budgets, their per-period spend, reservations and
// alerts. Settlement has no method of its own: UsageStore.InsertUsage
// settles each newly inserted record in the transaction that inserts it.
//
// For every budget that applies to a newly inserted record (by its key,
// team and endpoint) or that the request's reservation holds, the record's
// CostMicros is added once to the budget's settled spend: in the period
// the reservation was made in if it holds the budget, else in the period
// containing the record's Time. The hold is released and the reservation
// deleted in the same transaction, so a record inserted twice is settled
// once and a crash leaves either both or neither. Costs above the reserved
// amount are settled in full: the ledger is the truth, so a hard budget is
// exceeded only by requests whose actual cost exceeded their reservation,
// or that were not reserved against it.
type BudgetStore interface {
	// CreateBudget validates and stores b, or returns ErrConflict if its
	// id exists. The period containing b.CreatedAt starts with the spend
	// the ledger already holds for b's subject in that period.
	CreateBudget(ctx context.Context, b Budget) error
	// Budget returns the budget with the given id, or ErrNotFound.
	Budget(ctx context.Context, id string) (Budget, error)
	// Budgets lists every budget ordered by id.
	Budgets(ctx context.Context) ([]Budget, error)
	// UpdateBudget replaces the limit, hardness and alert thresholds of
	// the budget with b.ID. It returns ErrNotFound for an unknown id and
	// ErrImmutable if b's scope, subject, period or time zone differ.
	UpdateBudget(ctx context.Context, b Budget) error
	// DeleteBudget deletes a budget with its spend, holds and alerts, or
	// returns ErrNotFound.
	DeleteBudget(ctx context.Context, id string) error

	// Reserve holds r.AmountMicros, in one transaction, against the
	// period containing now of every budget that applies to r.Subjects.
	// A hard budget takes the hold only if settled + reserved + amount
	// stays within its limit; if any refuses, nothing is held and the
	// error is a *BudgetExceededError. Soft budgets always take it. With
	// no budget applying, nothing is stored. Reserving a request id again
	// with the same owner and amount is a no-op; otherwise, or if a usage
	// record with that id exists, it is ErrConflict.
	Reserve(ctx context.Context, r Reservation, now time.Time) error
	// Release drops the reservation of requestID and its holds. It
	// reports whether there was one.
	Release(ctx context.Context, requestID string) (bool, error)
	// ReleaseExpired releases up to limit reservations whose ExpiresAt is
	// at or before now, and returns them.
	ReleaseExpired(ctx context.Context, now time.Time, limit int) ([]ExpiredReservation, error)
	// OutstandingReservations counts reservations not yet settled or
	// released.
	OutstandingReservations(ctx context.Context) (int64, error)

	// BudgetStatus returns the spend of budget id in the period
	// containing now, or ErrNotFound.
	BudgetStatus(ctx context.Context, id string, now time.Time) (BudgetStatus, error)
	// BudgetStatuses returns BudgetStatus for every budget, by id.
	BudgetStatuses(ctx context.Context, now time.Time) ([]BudgetStatus, error)

	// ClaimBudgetAlerts returns up to limit undelivered alerts that are
	// not claimed by someone else, oldest first, and claims them until
	// leaseUntil: until then no other caller gets them. An alert not
	// acknowledged by then is offered again.
	ClaimBudgetAlerts(ctx context.Context, now, leaseUntil time.Time, limit int) ([]BudgetAlert, error)
	// AckBudgetAlert marks an alert delivered; it is not offered again.
	AckBudgetAlert(ctx context.Context, a BudgetAlert, at time.Time) error
}

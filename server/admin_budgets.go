package server

import (
	"errors"
	"net/http"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/apierr"
	"github.com/sluice-gateway/sluice/pricing"
)

// BudgetView is a budget with its current period's spend, money in both
// integer micro-dollars and a USD string.
type BudgetView struct {
	ID              string     `json:"id"`
	Scope           string     `json:"scope"`
	Subject         string     `json:"subject"`
	Period          string     `json:"period"`
	TimeZone        string     `json:"time_zone"`
	LimitMicros     int64      `json:"limit_micros"`
	LimitUSD        string     `json:"limit_usd"`
	Hard            bool       `json:"hard"`
	AlertThresholds []int      `json:"alert_thresholds"`
	PeriodStart     time.Time  `json:"period_start"`
	ResetAt         *time.Time `json:"reset_at"`
	SettledMicros   int64      `json:"settled_micros"`
	ReservedMicros  int64      `json:"reserved_micros"`
	RemainingMicros int64      `json:"remaining_micros"`
	RemainingUSD    string     `json:"remaining_usd"`
}

// BudgetViewOf renders a budget status.
func BudgetViewOf(st sluice.BudgetStatus) BudgetView {
	b := st.Budget
	v := BudgetView{ID: b.ID, Scope: string(b.Scope), Subject: b.Subject, Period: string(b.Period), TimeZone: b.TimeZone,
		LimitMicros: b.LimitMicros, LimitUSD: sluice.FormatUSD(b.LimitMicros), Hard: b.Hard, AlertThresholds: b.AlertThresholds,
		PeriodStart: st.PeriodStart, SettledMicros: st.SettledMicros, ReservedMicros: st.ReservedMicros,
		RemainingMicros: st.RemainingMicros(), RemainingUSD: sluice.FormatUSD(st.RemainingMicros())}
	if v.TimeZone == "" {
		v.TimeZone = "UTC"
	}
	if v.AlertThresholds == nil {
		v.AlertThresholds = []int{}
	}
	if !st.ResetAt.IsZero() {
		v.ResetAt = &st.ResetAt
	}
	return v
}

// BudgetInput is the body of a budget create.
type BudgetInput struct {
	ID              string `json:"id"`
	Scope           string `json:"scope"`
	Subject         string `json:"subject"`
	Period          string `json:"period"`
	TimeZone        string `json:"time_zone"`
	LimitUSD        string `json:"limit_usd"`
	Hard            *bool  `json:"hard"` // default true
	AlertThresholds []int  `json:"alert_thresholds"`
}

// Budget converts the input, validating it.
func (in BudgetInput) Budget(now time.Time) (sluice.Budget, error) {
	limit, err := pricing.ParseUSD(in.LimitUSD)
	if err != nil {
		return sluice.Budget{}, apierr.BadRequest("limit_usd", "invalid_value", "limit_usd: %v", err)
	}
	b := sluice.Budget{ID: in.ID, Scope: sluice.BudgetScope(in.Scope), Subject: in.Subject, Period: sluice.BudgetPeriod(in.Period),
		TimeZone: in.TimeZone, LimitMicros: int64(limit), Hard: in.Hard == nil || *in.Hard, AlertThresholds: in.AlertThresholds,
		CreatedAt: now.UTC()}
	if err := b.Validate(); err != nil {
		return sluice.Budget{}, apierr.BadRequest("", "invalid_value", "Invalid budget: %v", err)
	}
	return b, nil
}

func (s *Server) adminListBudgets(r *http.Request, _ *sluice.Key) (int, any, error) {
	sts, err := s.budgets.Statuses(r.Context())
	if err != nil {
		return 0, nil, err
	}
	out := make([]BudgetView, 0, len(sts))
	for _, st := range sts {
		out = append(out, BudgetViewOf(st))
	}
	return 200, map[string]any{"budgets": out}, nil
}

func (s *Server) adminGetBudget(r *http.Request, _ *sluice.Key) (int, any, error) {
	st, err := s.budgets.Status(r.Context(), r.PathValue("id"))
	if errors.Is(err, sluice.ErrNotFound) {
		return 0, nil, apierr.NotFound("id", "budget_not_found", "No budget with id %q.", r.PathValue("id"))
	}
	if err != nil {
		return 0, nil, err
	}
	return 200, BudgetViewOf(st), nil
}

func (s *Server) adminCreateBudget(r *http.Request, _ *sluice.Key) (int, any, error) {
	var in BudgetInput
	if err := decodeJSON(r, &in); err != nil {
		return 0, nil, err
	}
	b, err := in.Budget(time.Now())
	if err != nil {
		return 0, nil, err
	}
	if err := s.store.CreateBudget(r.Context(), b); err != nil {
		if errors.Is(err, sluice.ErrConflict) {
			return 0, nil, &apierr.Error{Status: 409, Type: "invalid_request_error", Code: "budget_exists",
				Msg: "A budget with id " + b.ID + " exists.", Class: sluice.ErrClassInvalidRequest}
		}
		return 0, nil, err
	}
	s.budgetList.Refresh(r.Context())
	st, err := s.budgets.Status(r.Context(), b.ID)
	if err != nil {
		return 0, nil, err
	}
	return 201, BudgetViewOf(st), nil
}

func (s *Server) adminDeleteBudget(r *http.Request, _ *sluice.Key) (int, any, error) {
	id := r.PathValue("id")
	if err := s.store.DeleteBudget(r.Context(), id); err != nil {
		if errors.Is(err, sluice.ErrNotFound) {
			return 0, nil, apierr.NotFound("id", "budget_not_found", "No budget with id %q.", id)
		}
		return 0, nil, err
	}
	s.budgetList.Refresh(r.Context())
	return 200, map[string]any{"id": id, "deleted": true}, nil
}

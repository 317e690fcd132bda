package server

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/apierr"
)

// TeamView is a team as the admin API shows it.
type TeamView struct {
	Name        string    `json:"name"`
	Description string    `json:"description"`
	ClassFloor  string    `json:"class_floor"`
	ActiveKeys  int       `json:"active_keys"`
	CreatedAt   time.Time `json:"created_at"`
}

func teamView(t *sluice.Team, activeKeys int) TeamView {
	return TeamView{Name: t.Name, Description: t.Description, ClassFloor: t.ClassFloor, ActiveKeys: activeKeys, CreatedAt: t.CreatedAt}
}

// teams returns the store's teams, or a 501 if it keeps none.
func (s *Server) teams() (sluice.TeamStore, error) {
	ts, ok := s.store.(sluice.TeamStore)
	if !ok {
		return nil, &apierr.Error{Status: http.StatusNotImplemented, Type: "server_error", Code: "teams_unsupported",
			Msg: "This gateway's store keeps no teams.", Class: sluice.ErrClassInternal}
	}
	return ts, nil
}

// activeKeys counts the keys of each team that are active at now.
func (s *Server) activeKeys(r *http.Request, now time.Time) (map[string]int, error) {
	ks, err := s.store.Keys(r.Context())
	if err != nil {
		return nil, err
	}
	n := map[string]int{}
	for i := range ks {
		if ks[i].Active(now) {
			n[ks[i].Team]++
		}
	}
	return n, nil
}

// adminListTeams serves GET /admin/v1/teams.
func (s *Server) adminListTeams(r *http.Request, _ *sluice.Key) (int, any, error) {
	st, err := s.teams()
	if err != nil {
		return 0, nil, err
	}
	ts, err := st.Teams(r.Context())
	if err != nil {
		return 0, nil, err
	}
	active, err := s.activeKeys(r, time.Now())
	if err != nil {
		return 0, nil, err
	}
	out := make([]TeamView, len(ts))
	for i := range ts {
		out[i] = teamView(&ts[i], active[ts[i].Name])
	}
	return 200, map[string]any{"teams": out}, nil
}

// adminGetTeam serves GET /admin/v1/teams/{name}.
func (s *Server) adminGetTeam(r *http.Request, _ *sluice.Key) (int, any, error) {
	st, err := s.teams()
	if err != nil {
		return 0, nil, err
	}
	name := r.PathValue("name")
	t, err := st.Team(r.Context(), name)
	if errors.Is(err, sluice.ErrNotFound) {
		return 0, nil, apierr.NotFound("name", "team_not_found", "No team named %q.", name)
	}
	if err != nil {
		return 0, nil, err
	}
	active, err := s.activeKeys(r, time.Now())
	if err != nil {
		return 0, nil, err
	}
	return 200, teamView(&t, active[t.Name]), nil
}

// adminCreateTeam serves POST /admin/v1/teams.
func (s *Server) adminCreateTeam(r *http.Request, _ *sluice.Key) (int, any, error) {
	st, err := s.teams()
	if err != nil {
		return 0, nil, err
	}
	var in struct {
		Name        string `json:"name"`
		Description string `json:"description"`
		ClassFloor  string `json:"class_floor"`
	}
	if err := decodeJSON(r, &in); err != nil {
		return 0, nil, err
	}
	t := sluice.Team{Name: in.Name, Description: in.Description, ClassFloor: in.ClassFloor, CreatedAt: time.Now().UTC()}
	if err := t.Validate(); err != nil {
		return 0, nil, apierr.BadRequest("name", "invalid_value", "%v", err)
	}
	if err := st.CreateTeam(r.Context(), t); err != nil {
		if errors.Is(err, sluice.ErrConflict) {
			return 0, nil, &apierr.Error{Status: http.StatusConflict, Type: "invalid_request_error", Code: "team_exists",
				Param: "name", Msg: fmt.Sprintf("A team named %q exists already.", t.Name), Class: sluice.ErrClassInvalidRequest}
		}
		return 0, nil, err
	}
	return 201, teamView(&t, 0), nil
}

// adminDeleteTeam serves DELETE /admin/v1/teams/{name}. A team with active
// keys is not deleted: the answer is a 409 naming them.
func (s *Server) adminDeleteTeam(r *http.Request, _ *sluice.Key) (int, any, error) {
	st, err := s.teams()
	if err != nil {
		return 0, nil, err
	}
	name := r.PathValue("name")
	t, err := st.Team(r.Context(), name)
	if err == nil {
		err = st.DeleteTeam(r.Context(), name, time.Now())
	}
	var inUse *sluice.TeamInUseError
	switch {
	case errors.Is(err, sluice.ErrNotFound):
		return 0, nil, apierr.NotFound("name", "team_not_found", "No team named %q.", name)
	case errors.As(err, &inUse):
		return 0, nil, &apierr.Error{Status: http.StatusConflict, Type: "invalid_request_error", Code: "team_in_use",
			Param: "name", Msg: inUse.Error() + ".", Class: sluice.ErrClassInvalidRequest}
	case err != nil:
		return 0, nil, err
	}
	return 200, teamView(&t, 0), nil
}

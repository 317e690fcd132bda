package proxy

import (
	"encoding/json"
	"net/http"
	"sort"
	"strconv"

	"github.com/sluice-gateway/sluice/apierr"
)

type model struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func (e *Endpoint) model() model {
	owner := "sluice"
	if e.Simulator() {
		owner = "sluice-simulator"
	}
	return model{ID: e.Name, Object: "model", OwnedBy: owner}
}

// Models serves GET /v1/models (only the endpoints the caller's key may
// use) and GET /v1/models/{model}.
func (p *Proxy) Models() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k, aerr := p.authenticate(r)
		if aerr != nil {
			apierr.WriteOpenAI(w, aerr)
			return
		}
		eps := *p.endpoints.Load()
		var out any
		if name := r.PathValue("model"); name != "" {
			e := eps[name]
			if e == nil || !k.MayUse(name) {
				apierr.WriteOpenAI(w, apierr.NotFound("model", "model_not_found", "The model '%s' does not exist or you do not have access to it.", name))
				return
			}
			out = e.model()
		} else {
			list := struct {
				Object string  `json:"object"`
				Data   []model `json:"data"`
			}{Object: "list", Data: []model{}}
			for name, e := range eps {
				if k.MayUse(name) {
					list.Data = append(list.Data, e.model())
				}
			}
			sort.Slice(list.Data, func(i, j int) bool { return list.Data[i].ID < list.Data[j].ID })
			out = list
		}
		b, _ := json.Marshal(out)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Write(b)
	})
}

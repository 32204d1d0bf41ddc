package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// watchEnvironments streams what GET /v1/environments with the same
// filters shows, as Server-Sent Events: a `list` event with every
// environment now ({"items": [...]}), then an `environment` event for each
// one created or changed and a `deleted` event ({"id"}) for each one gone
// or no longer matching, and a comment every 15 s. After each change it
// lists again, through the same scoped query as the list route, so that
// it shows exactly what the caller may see; changes that come while it
// lists are taken together.
func (a *API) watchEnvironments(w http.ResponseWriter, r *http.Request) error {
	lq, _, err := parseList(r, "project_id", "label", "state")
	if err != nil {
		return err
	}
	if err := a.scopeList(r, &lq); err != nil {
		return err
	}
	lq.Limit, lq.MaxBytes = store.MaxLimit, 0
	stream := a.startSSE(w, r)
	defer stream.close()
	var last map[string][]byte
	for {
		changed := a.hub.AnyChanged()
		items, err := listAll(r.Context(), a.store, lq)
		if err != nil {
			requestInfoFrom(r.Context()).logger.Error("watch: list environments", "error", err.Error())
			return nil
		}
		now := make(map[string][]byte, len(items))
		var out bytes.Buffer
		if last == nil {
			data, _ := json.Marshal(apiv1.List[apiv1.Environment]{Items: items})
			out.Write(sseEvent("list", "", data))
		}
		for _, e := range items {
			data, _ := json.Marshal(e)
			now[e.ID] = data
			if prev, ok := last[e.ID]; last != nil && (!ok || !bytes.Equal(prev, data)) {
				out.Write(sseEvent("environment", "", data))
			}
		}
		for id := range last {
			if _, ok := now[id]; !ok {
				data, _ := json.Marshal(struct {
					ID string `json:"id"`
				}{id})
				out.Write(sseEvent("deleted", "", data))
			}
		}
		last = now
		if out.Len() > 0 && !stream.send(out.Bytes()) {
			return nil
		}
		if !stream.wait(changed) {
			return nil
		}
	}
}

// listAll reads every page of the environments lq selects.
func listAll(ctx context.Context, st store.Reader, lq store.ListQuery) ([]apiv1.Environment, error) {
	var all []apiv1.Environment
	for {
		page, next, err := st.ListEnvironments(ctx, lq)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if next == "" {
			return all, nil
		}
		lq.Cursor = next
	}
}

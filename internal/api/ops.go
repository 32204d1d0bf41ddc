package api

import (
	_ "embed"
	"net/http"

	"github.com/isolationhq/terraform-provider-isolation/internal/store"
	"github.com/isolationhq/terraform-provider-isolation/internal/version"
)

// OpenAPI is the API's OpenAPI 3.1 document, kept in the repository.
//
//go:embed openapi.json
var OpenAPI []byte

func (a *API) healthz(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, health{Status: "ok", Version: version.String()})
	return nil
}

func (a *API) readyz(w http.ResponseWriter, r *http.Request) error {
	if _, _, err := a.store.ListProjects(r.Context(), store.ListQuery{Limit: 1}); err != nil {
		requestInfoFrom(r.Context()).logger.Error("readiness: store unreachable", "error", err.Error())
		return newError(probUnavailable, "the store is not reachable")
	}
	if !a.reconciler.Started() {
		return newError(probUnavailable, "the reconciler has not started")
	}
	select {
	case <-a.closing:
		return newError(probUnavailable, "the server is shutting down")
	default:
	}
	writeJSON(w, http.StatusOK, health{Status: "ready"})
	return nil
}

func (a *API) serveMetrics(w http.ResponseWriter, r *http.Request) error {
	a.metrics.handler.ServeHTTP(w, r)
	return nil
}

func (a *API) openapi(w http.ResponseWriter, r *http.Request) error {
	writeBody(w, http.StatusOK, OpenAPI)
	return nil
}

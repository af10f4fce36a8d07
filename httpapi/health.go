package httpapi

import (
	"context"
	_ "embed"
	"encoding/json"
	"net/http"
)

// openAPISource is the OpenAPI 3.1 document of every route.
//
//go:embed openapi.json
var openAPISource []byte

// openAPIDocument returns the document with info.version set to version
// (kept as written when empty).
func openAPIDocument(version string) ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(openAPISource, &doc); err != nil {
		return nil, err
	}
	if info, ok := doc["info"].(map[string]any); ok && version != "" {
		info["version"] = version
	}
	return json.MarshalIndent(doc, "", "  ")
}

// OpenAPI returns the OpenAPI 3.1 document the API serves at /openapi.json.
func OpenAPI() []byte { return append([]byte(nil), openAPISource...) }

func (s *server) handleOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(s.openapi)
}

// HealthResponse is the body of /healthz and of a ready /readyz.
type HealthResponse struct {
	Status  string `json:"status"`
	Version string `json:"version,omitempty"`
}

// handleHealthz serves GET /healthz: the process is up.
func (s *server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	s.writeJSON(w, r, http.StatusOK, HealthResponse{Status: "ok", Version: s.cfg.Version})
}

// handleReadyz serves GET /readyz: 200 when Config.Ready passes within
// ReadyTimeout, else 503. Why it failed goes to the log only.
func (s *server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), ReadyTimeout)
		defer cancel()
		if err := s.cfg.Ready(ctx); err != nil {
			s.log.WarnContext(r.Context(), "http: not ready", "error", err)
			writeProblem(w, r, newProblem(eUnavailable, "A dependency (database or broker) is unavailable."))
			return
		}
	}
	s.writeJSON(w, r, http.StatusOK, HealthResponse{Status: "ready", Version: s.cfg.Version})
}

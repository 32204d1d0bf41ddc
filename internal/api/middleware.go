package api

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
)

// requestIDRE is what an X-Request-Id we accept looks like: up to 128
// characters that are safe in logs and headers.
var requestIDRE = regexp.MustCompile(`^[A-Za-z0-9._:/+=@-]{1,128}$`)

// middleware is the one chain every request passes: request id, request
// logger, recovery, metrics, and problem bodies for the router's own 404
// and 405 answers.
func (a *API) middleware(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		info := &requestInfo{route: "unmatched"}
		rid := r.Header.Get(apiv1.HeaderRequestID)
		badID := rid != "" && !requestIDRE.MatchString(rid)
		if rid == "" || badID {
			rid = control.NewID("req_")
		}
		info.requestID = rid
		info.logger = a.log.With("request_id", rid)
		info.source = apiv1.Source{IP: truncateField(remoteIP(r)), UserAgent: truncateField(r.UserAgent())}
		r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, info))
		w.Header().Set(apiv1.HeaderRequestID, rid)
		sw := &statusWriter{ResponseWriter: w}

		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				info.logger.Error("panic serving request", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				if !sw.wrote {
					writeProblem(sw, r, errors.New("panic"))
				}
			}
			d := time.Since(start)
			a.metrics.observeRequest(info.route, sw.code(), d)
			attrs := []any{"method", r.Method, "path", truncateField(r.URL.Path), "route", info.route, "status", sw.code(), "duration_ms", float64(d.Microseconds()) / 1000}
			info.logger.Info("request", attrs...)
		}()

		if badID {
			writeProblem(sw, r, problem.Field(problem.Malformed, apiv1.HeaderRequestID, "must be 1-128 characters of letters, digits and ._:/+=@-"))
			return
		}
		h, pattern := mux.Handler(r)
		if pattern == "" {
			// The router's own answer (404, 405, or a redirect to the
			// clean path): keep its status and headers, give it a problem body.
			rec := &headerRecorder{header: http.Header{}}
			h.ServeHTTP(rec, r)
			switch rec.status {
			case http.StatusNotFound:
				writeProblem(sw, r, problem.New(problem.NotFound, "no route matches %s %s", r.Method, r.URL.Path))
			case http.StatusMethodNotAllowed:
				allow := rec.header.Get("Allow")
				sw.Header().Set("Allow", allow)
				writeProblem(sw, r, problem.New(problem.Method, "%s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, allow))
			default:
				for k, v := range rec.header {
					sw.Header()[k] = v
				}
				sw.WriteHeader(rec.status)
			}
			return
		}
		// Matched: let the mux serve it, which also sets the path values.
		mux.ServeHTTP(sw, r)
	})
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// statusWriter remembers the status for logs and metrics.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if !s.wrote {
		s.status, s.wrote = http.StatusOK, true
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) code() int {
	if !s.wrote {
		return http.StatusOK
	}
	return s.status
}

// Unwrap lets http.ResponseController reach Flush (for the watch stream).
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		if !s.wrote {
			s.status, s.wrote = http.StatusOK, true
		}
		f.Flush()
	}
}

func (s *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(s.ResponseWriter).Hijack()
}

// headerRecorder captures what the router would have answered.
type headerRecorder struct {
	header http.Header
	status int
}

func (h *headerRecorder) Header() http.Header { return h.header }
func (h *headerRecorder) Write(b []byte) (int, error) {
	if h.status == 0 {
		h.status = http.StatusOK
	}
	return len(b), nil
}
func (h *headerRecorder) WriteHeader(code int) {
	if h.status == 0 {
		h.status = code
	}
}

// MaxFieldBytes bounds every request-derived text the server keeps (audit
// events, log lines): a caller must not decide how much disk one request
// costs.
const MaxFieldBytes = 256

// truncatedMark ends a value cut to MaxFieldBytes.
const truncatedMark = "…[truncated]"

// truncateField makes s valid UTF-8 (invalid bytes become U+FFFD) of at
// most MaxFieldBytes; a longer value is cut on a character boundary and
// ends with truncatedMark, so a reader knows there was more.
func truncateField(s string) string {
	if len(s) <= MaxFieldBytes && utf8.ValidString(s) {
		return s
	}
	long := len(s) > 4*MaxFieldBytes
	if long {
		s = s[:4*MaxFieldBytes] // the rest goes anyway; spare the work on it
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= MaxFieldBytes && !long {
		return s
	}
	cut := min(len(s), MaxFieldBytes-len(truncatedMark))
	for cut > 0 && cut < len(s) && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + truncatedMark
}

// retryAfter formats a delay as whole seconds, at least 1.
func retryAfter(d time.Duration) string {
	s := int((d + time.Second - 1) / time.Second)
	return strconv.Itoa(max(s, 1))
}

// idFromPath is the {id} wildcard, trimmed.
func idFromPath(r *http.Request) string { return strings.TrimSpace(r.PathValue("id")) }

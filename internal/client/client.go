// Package client is the typed Go client (SDK) for isolationd's API v1.
//
// Every call goes through one request path (Client.do) that sets the
// headers, retries what is safe to retry, and turns every error response
// into one error type, *Error. The package depends on nothing of the
// server but the wire types in internal/apiv1.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-cleanhttp"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultRequestTimeout = 30 * time.Second
	DefaultRetryWaitMin   = 250 * time.Millisecond
	DefaultRetryWaitMax   = 15 * time.Second
	DefaultUserAgent      = "isolation-go-client"
)

// maxIdleConnsPerHost is how many idle connections to isolationd are kept.
const maxIdleConnsPerHost = 64

// problemInFlight is the problem type (its last segment) of a 409 saying
// the first request with the same Idempotency-Key is still running.
const problemInFlight = "idempotency-in-flight"

// maxResponseBytes bounds how much of a response body is read, so a broken
// or hostile server cannot exhaust the client's memory.
const maxResponseBytes = 32 << 20

// Logger is a leveled, structured logger: a message and key/value pairs,
// so tflog, slog and hclog adapt to it in a few lines.
type Logger interface {
	Debug(msg string, keysAndValues ...any)
	Info(msg string, keysAndValues ...any)
	Warn(msg string, keysAndValues ...any)
	Error(msg string, keysAndValues ...any)
}

// Config configures a Client. Endpoint and Token are required.
type Config struct {
	// Endpoint is the base URL of isolationd, for example https://isolation.example.com.
	Endpoint string
	// Token is the bearer token. It is sent only in the Authorization header
	// and never logged nor put in an error.
	Token string
	// CACertPEM, when set, is the only set of CAs trusted for TLS endpoints.
	CACertPEM string
	// Insecure skips TLS certificate verification (testing only).
	Insecure bool
	// MaxRetries caps how many times a retryable failure (429, 5xx, a
	// connection error, a lost answer) is retried. Zero means no cap: a
	// call retries until its context's deadline (or, without one, until
	// RequestTimeout). Negative disables retries.
	MaxRetries int
	// RequestTimeout bounds each HTTP attempt, and a whole call whose
	// context has no deadline. Zero means DefaultRequestTimeout.
	RequestTimeout time.Duration
	// RetryWaitMin and RetryWaitMax are the base and the cap of the
	// exponential backoff (with full jitter) between retries when the
	// server gives no Retry-After. Zero means the defaults.
	RetryWaitMin, RetryWaitMax time.Duration
	// UserAgent identifies the caller, e.g. "terraform-provider-isolation/1.2.3".
	UserAgent string
	// Logger receives request and retry logs; nil discards them.
	Logger Logger
	// HTTPClient, when set, supplies the transport (its Timeout is ignored:
	// RequestTimeout applies). TLS settings above are then not applied.
	HTTPClient *http.Client
}

// Client talks to isolationd. It is safe for concurrent use.
type Client struct {
	base           *url.URL
	token          string
	userAgent      string
	maxRetries     int
	requestTimeout time.Duration
	waitMin        time.Duration
	waitMax        time.Duration
	http           *http.Client // no Timeout: each attempt has its own context
	logger         Logger
	// jitter draws a backoff in [0, d]; tests make it deterministic.
	jitter func(d time.Duration) time.Duration
}

// New validates cfg and returns a Client. It makes no request.
func New(cfg Config) (*Client, error) {
	if strings.TrimSpace(cfg.Endpoint) == "" {
		return nil, errors.New("endpoint is required")
	}
	base, err := url.Parse(strings.TrimRight(cfg.Endpoint, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("endpoint %q is not an http(s) URL such as https://isolation.example.com", cfg.Endpoint)
	}
	if base.User != nil {
		return nil, errors.New("endpoint must not contain credentials; use the token")
	}
	if cfg.Token == "" {
		return nil, errors.New("token is required")
	}
	if strings.ContainsAny(cfg.Token, " \t\r\n") {
		// Said without echoing the token, which is a secret.
		return nil, errors.New("token must not contain whitespace")
	}
	if cfg.RequestTimeout < 0 {
		return nil, fmt.Errorf("request timeout must not be negative, got %s", cfg.RequestTimeout)
	}

	c := &Client{
		base:           base,
		token:          cfg.Token,
		userAgent:      cfg.UserAgent,
		maxRetries:     cfg.MaxRetries,
		requestTimeout: cfg.RequestTimeout,
		waitMin:        cfg.RetryWaitMin,
		waitMax:        cfg.RetryWaitMax,
		logger:         cfg.Logger,
		jitter:         fullJitter,
	}
	if c.userAgent == "" {
		c.userAgent = DefaultUserAgent
	}
	// Inside, -1 is "no cap" and 0 "no retries".
	switch {
	case c.maxRetries == 0:
		c.maxRetries = -1
	case c.maxRetries < 0:
		c.maxRetries = 0
	}
	if c.requestTimeout == 0 {
		c.requestTimeout = DefaultRequestTimeout
	}
	if c.waitMin <= 0 {
		c.waitMin = DefaultRetryWaitMin
	}
	if c.waitMax <= 0 {
		c.waitMax = DefaultRetryWaitMax
	}
	if c.waitMax < c.waitMin {
		c.waitMax = c.waitMin
	}

	if cfg.HTTPClient != nil {
		transport := cfg.HTTPClient.Transport
		if transport == nil {
			transport = http.DefaultTransport
		}
		c.http = &http.Client{Transport: transport}
		return c, nil
	}
	transport := cleanhttp.DefaultPooledTransport()
	// Terraform runs 10 operations at once by default, more with
	// -parallelism; keep a connection for each instead of redialling.
	transport.MaxIdleConnsPerHost = maxIdleConnsPerHost
	if cfg.CACertPEM != "" || cfg.Insecure {
		tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.Insecure} //nolint:gosec // opt-in for tests
		if cfg.CACertPEM != "" {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM([]byte(cfg.CACertPEM)) {
				return nil, errors.New("ca_cert_pem holds no valid PEM certificate")
			}
			tlsConfig.RootCAs = pool
		}
		transport.TLSClientConfig = tlsConfig
	}
	c.http = &http.Client{Transport: transport}
	return c, nil
}

// Endpoint returns the base URL the client talks to.
func (c *Client) Endpoint() string { return c.base.String() }

// request is one logical API call; do may send it several times.
type request struct {
	method string
	path   string     // escaped path below the endpoint, e.g. "/v1/projects/p-1"
	query  url.Values // optional
	body   any        // JSON-encoded when non-nil
	// ifMatch, when set, makes a PATCH or DELETE conditional on the ETag.
	ifMatch string
	// extraTimeout lengthens the per-attempt timeout, for long polls that
	// the server holds open on purpose.
	extraTimeout time.Duration
}

// response is what callers may need beyond the decoded body.
type response struct {
	StatusCode int
	Header     http.Header
}

// do sends req and decodes a 2xx JSON body into out (when out is
// non-nil); any other answer becomes an *Error. It retries what is safe to
// retry (retryableStatus, retryableError) until ctx's deadline, or, without one, until the
// request timeout: a call is bounded by time, not by a count, unless
// MaxRetries sets one. Between attempts it waits as the server's
// Retry-After says, or a capped exponential backoff with full jitter.
// When it gives up on a retryable failure, the error is a *GaveUpError.
func (c *Client) do(ctx context.Context, req request, out any) (*response, error) {
	var payload []byte
	var err error
	if req.body != nil {
		if payload, err = json.Marshal(req.body); err != nil {
			return nil, fmt.Errorf("encoding %s %s request: %w", req.method, req.path, err)
		}
	}

	// req.path is already escaped (ids go through escape), so an id holding
	// "/" or "?" stays one path segment.
	u := *c.base
	u.RawPath = c.base.EscapedPath() + req.path
	if u.Path, err = url.PathUnescape(u.RawPath); err != nil {
		return nil, fmt.Errorf("building %s %s request: %w", req.method, req.path, err)
	}
	if len(req.query) > 0 {
		u.RawQuery = req.query.Encode()
	}

	h, key, requestID := c.headers(req, payload != nil)

	perAttempt := c.requestTimeout + req.extraTimeout
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, perAttempt)
		defer cancel()
	}
	log := redactingLogger{next: c.logger, secret: c.token}
	start := time.Now()
	gaveUp := &GaveUpError{Method: req.method, Path: req.path, IdempotencyKey: key, RequestID: requestID}
	for attempt := 0; ; attempt++ {
		log.Debug("performing request", "method", req.method, "url", u.Redacted(), "request_id", requestID, "attempt", attempt+1)
		a := c.attempt(ctx, req.method, u.String(), h, payload, perAttempt)
		gaveUp.Attempts++
		gaveUp.Unanswered = gaveUp.Unanswered || a.unanswered
		if a.err == nil && a.status >= 200 && a.status <= 299 {
			return c.decode(req, a, requestID, out)
		}
		if gaveUp.Unanswered && req.method == http.MethodDelete && (a.status == http.StatusNotFound || a.status == http.StatusPreconditionFailed) {
			// An earlier attempt's answer was lost: this 404 or 412 may be
			// that attempt's own work, which settleDelete tells.
			if c.settleDelete(ctx, u.String(), h, perAttempt) {
				return &response{StatusCode: http.StatusNoContent, Header: http.Header{}}, nil
			}
		}
		if !a.retryable {
			if a.err != nil {
				return nil, fmt.Errorf("%s %s (request id %s): %w", req.method, u.Redacted(), requestID, a.err)
			}
			return c.decode(req, a, requestID, out)
		}
		// An attempt cut by the deadline says less than the answer before it.
		if a.err == nil || ctx.Err() == nil || gaveUp.Last == nil {
			gaveUp.Last = a.failure(req.method, req.path, requestID)
		}
		gaveUp.Elapsed = time.Since(start)
		if ctx.Err() != nil {
			gaveUp.Cause = ctx.Err()
			return nil, gaveUp
		}
		if c.maxRetries >= 0 && attempt >= c.maxRetries {
			gaveUp.MaxRetries = c.maxRetries
			return nil, gaveUp
		}
		wait := backoff(c.waitMin, c.waitMax, attempt, a.header, c.jitter)
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
			gaveUp.Cause = context.DeadlineExceeded
			gaveUp.RetryAfter = wait
			return nil, gaveUp
		}
		log.Debug("retrying request", "method", req.method, "url", u.Redacted(), "request_id", requestID,
			"attempt", attempt+1, "failure", gaveUp.Last, "wait", wait)
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			gaveUp.Cause = ctx.Err()
			gaveUp.Elapsed = time.Since(start)
			return nil, gaveUp
		}
	}
}

// headers are a call's request headers. They are made once, so the
// Idempotency-Key and X-Request-Id are the same on every attempt.
func (c *Client) headers(req request, hasBody bool) (h http.Header, key, requestID string) {
	h = http.Header{}
	h.Set("Authorization", "Bearer "+c.token)
	h.Set("User-Agent", c.userAgent)
	h.Set("Accept", apiv1.MediaJSON+", "+apiv1.MediaProblem)
	requestID = uuid.NewString()
	h.Set(apiv1.HeaderRequestID, requestID)
	if hasBody {
		h.Set("Content-Type", apiv1.MediaJSON)
	}
	// Every write that is not a DELETE carries a key, so a retry after a
	// lost answer replays it instead of doing it twice (POST) or failing its
	// own If-Match (PATCH, PUT).
	switch req.method {
	case http.MethodPost, http.MethodPatch, http.MethodPut:
		key = uuid.NewString()
		h.Set(apiv1.HeaderIdempotencyKey, key)
	}
	if req.ifMatch != "" {
		h.Set("If-Match", req.ifMatch)
	}
	return h, key, requestID
}

// decode turns a complete answer into the result of do.
func (c *Client) decode(req request, a attemptResult, requestID string, out any) (*response, error) {
	if rid := a.header.Get(apiv1.HeaderRequestID); rid != "" {
		requestID = rid
	}
	meta := &response{StatusCode: a.status, Header: a.header}
	if a.status < 200 || a.status > 299 {
		return meta, newError(req.method, req.path, a.status, requestID, a.body)
	}
	if out != nil && len(bytes.TrimSpace(a.body)) > 0 {
		if err := json.Unmarshal(a.body, out); err != nil {
			return meta, fmt.Errorf("%s %s (request id %s): decoding response: %w", req.method, req.path, requestID, err)
		}
	}
	return meta, nil
}

// attemptResult is what one HTTP exchange gave.
type attemptResult struct {
	status int // 0 when there was no complete answer
	header http.Header
	body   []byte
	err    error // transport failure, nil with a complete answer
	// unanswered: the request may have reached the server, which may have
	// done it, but no complete answer came back.
	unanswered bool
	retryable  bool
}

// failure is the attempt as the error a caller sees after the last retry.
func (a attemptResult) failure(method, path, requestID string) error {
	if a.err != nil {
		return a.err
	}
	if rid := a.header.Get(apiv1.HeaderRequestID); rid != "" {
		requestID = rid
	}
	return newError(method, path, a.status, requestID, a.body)
}

// attempt sends one request, bounded by timeout, and reads its whole answer.
func (c *Client) attempt(ctx context.Context, method, target string, h http.Header, payload []byte, timeout time.Duration) attemptResult {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var body io.Reader = http.NoBody
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	hr, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return attemptResult{err: err}
	}
	hr.Header = h.Clone()
	resp, err := c.http.Do(hr)
	if err != nil {
		sent := !notSent(err)
		return attemptResult{err: err, unanswered: sent, retryable: retryableError(err)}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		// The server answered, but the answer was cut: as good as lost.
		return attemptResult{err: fmt.Errorf("reading response: %w", err), unanswered: true, retryable: true}
	}
	a := attemptResult{status: resp.StatusCode, header: resp.Header, body: data}
	a.retryable = retryableStatus(resp.StatusCode, data)
	return a
}

// settleDelete decides a DELETE whose earlier answer was lost and whose
// retry got 404 or 412: the object being gone (404), or being deleted
// (an environment in state deleting), is the work of that earlier attempt,
// so the DELETE succeeded. Anything else keeps the retry's answer.
func (c *Client) settleDelete(ctx context.Context, target string, h http.Header, timeout time.Duration) bool {
	get := h.Clone()
	get.Del("If-Match")
	a := c.attempt(ctx, http.MethodGet, target, get, nil, timeout)
	if a.err != nil {
		return false
	}
	if a.status == http.StatusNotFound {
		return true
	}
	var obj struct {
		State string `json:"state"`
	}
	return a.status == http.StatusOK && json.Unmarshal(a.body, &obj) == nil && obj.State == apiv1.StateDeleting
}

// retryableStatus: 429, and 5xx but 501 (the server will not ever do it),
// are worth another attempt; so is a 409 saying the first request with
// the same Idempotency-Key is still running.
func retryableStatus(status int, body []byte) bool {
	switch {
	case status == http.StatusTooManyRequests:
		return true
	case status >= 500 && status != http.StatusNotImplemented:
		return true
	case status == http.StatusConflict:
		var p apiv1.Problem
		return json.Unmarshal(body, &p) == nil && strings.HasSuffix(p.Type, "/"+problemInFlight)
	}
	return false
}

// retryableError: connection failures are retried; a certificate the
// client does not trust, or a URL it cannot use, never gets better.
func retryableError(err error) bool {
	var unknownCA x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var hostname x509.HostnameError
	var verify *tls.CertificateVerificationError
	var urlErr *url.Error
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &invalid), errors.As(err, &hostname), errors.As(err, &verify):
		return false
	case errors.As(err, &urlErr) && strings.Contains(urlErr.Err.Error(), "unsupported protocol scheme"):
		return false
	}
	return true
}

// notSent reports whether a transport error happened before the request
// could reach the server: the connection was never made.
func notSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// backoff is the wait before retry attempt+1: the server's Retry-After,
// whatever the status, or else full jitter over a capped exponential,
// uniformly in [0, min(maxWait, minWait·2^attempt)].
func backoff(minWait, maxWait time.Duration, attempt int, h http.Header, jitter func(time.Duration) time.Duration) time.Duration {
	if h != nil {
		if d, ok := retryAfter(h.Get("Retry-After"), time.Now()); ok {
			return d
		}
	}
	ceiling := maxWait
	if attempt < 30 && minWait<<attempt < maxWait {
		ceiling = minWait << attempt
	}
	return jitter(ceiling)
}

// fullJitter is uniformly random in [0, d].
func fullJitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(d) + 1)) //nolint:gosec // G404: jitter spreads retries out; it needs no unpredictability
}

// retryAfter parses a Retry-After value: delay-seconds or an HTTP-date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		return time.Duration(secs) * time.Second, true
	}
	when, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	if d := when.Sub(now); d > 0 {
		return d, true
	}
	return 0, true
}

// escape makes one path segment safe, so an id can never change the route.
func escape(segment string) string { return url.PathEscape(segment) }

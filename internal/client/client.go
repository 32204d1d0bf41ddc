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
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-cleanhttp"
	"github.com/hashicorp/go-retryablehttp"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultMaxRetries     = 4
	DefaultRequestTimeout = 30 * time.Second
	DefaultRetryWaitMin   = 250 * time.Millisecond
	DefaultRetryWaitMax   = 15 * time.Second
	DefaultUserAgent      = "isolation-go-client"
)

// maxIdleConnsPerHost is how many idle connections to isolationd are kept.
const maxIdleConnsPerHost = 64

// maxResponseBytes bounds how much of a response body is read, so a broken
// or hostile server cannot exhaust the client's memory.
const maxResponseBytes = 32 << 20

// Logger is a leveled, structured logger: a message and key/value pairs.
// It has the shape of retryablehttp.LeveledLogger, so tflog, slog and
// hclog adapt to it in a few lines.
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
	// MaxRetries is how many times a retryable failure (429, 5xx, connection
	// error) is retried. Zero means DefaultMaxRetries; negative disables retries.
	MaxRetries int
	// RequestTimeout bounds each HTTP attempt. Zero means DefaultRequestTimeout.
	RequestTimeout time.Duration
	// RetryWaitMin and RetryWaitMax bound the exponential backoff between
	// retries when the server gives no Retry-After. Zero means the defaults.
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
	transport      http.RoundTripper
	logger         Logger
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
	}
	if c.userAgent == "" {
		c.userAgent = DefaultUserAgent
	}
	switch {
	case c.maxRetries == 0:
		c.maxRetries = DefaultMaxRetries
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
		c.transport = cfg.HTTPClient.Transport
		if c.transport == nil {
			c.transport = http.DefaultTransport
		}
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
	c.transport = transport
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

// do sends req, retrying 429, 5xx and connection errors with backoff
// (honouring Retry-After), and decodes a 2xx JSON body into out (when out
// is non-nil). Any other answer becomes an *Error.
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

	var body any
	if payload != nil {
		body = payload // retryablehttp rewinds a []byte body on every attempt
	}
	rreq, err := retryablehttp.NewRequestWithContext(ctx, req.method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("building %s %s request: %w", req.method, req.path, err)
	}
	// Headers are set once; retryablehttp re-sends the same request, so the
	// Idempotency-Key and X-Request-Id are the same on every attempt.
	h := rreq.Header
	h.Set("Authorization", "Bearer "+c.token)
	h.Set("User-Agent", c.userAgent)
	h.Set("Accept", apiv1.MediaJSON+", "+apiv1.MediaProblem)
	requestID := uuid.NewString()
	h.Set(apiv1.HeaderRequestID, requestID)
	if payload != nil {
		h.Set("Content-Type", apiv1.MediaJSON)
	}
	// Every write that is not a DELETE carries a key, so a retry after a
	// lost answer replays it instead of doing it twice (POST) or failing its
	// own If-Match (PATCH, PUT).
	switch req.method {
	case http.MethodPost, http.MethodPatch, http.MethodPut:
		h.Set(apiv1.HeaderIdempotencyKey, uuid.NewString())
	}
	if req.ifMatch != "" {
		h.Set("If-Match", req.ifMatch)
	}

	resp, err := c.retrying(req.extraTimeout).Do(rreq)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("%s %s: %w", req.method, req.path, ctxErr)
		}
		return nil, fmt.Errorf("%s %s (request id %s): %w", req.method, u.Redacted(), requestID, err)
	}
	defer resp.Body.Close()

	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, fmt.Errorf("%s %s (request id %s): reading response: %w", req.method, req.path, requestID, err)
	}
	if rid := resp.Header.Get(apiv1.HeaderRequestID); rid != "" {
		requestID = rid
	}
	meta := &response{StatusCode: resp.StatusCode, Header: resp.Header}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return meta, newError(req.method, req.path, resp.StatusCode, requestID, data)
	}
	if out != nil && len(bytes.TrimSpace(data)) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return meta, fmt.Errorf("%s %s (request id %s): decoding response: %w", req.method, req.path, requestID, err)
		}
	}
	return meta, nil
}

// retrying returns the retryablehttp client for one call. It is cheap: the
// transport (and its connection pool) is shared by every call.
func (c *Client) retrying(extraTimeout time.Duration) *retryablehttp.Client {
	return &retryablehttp.Client{
		HTTPClient: &http.Client{
			Transport: c.transport,
			Timeout:   c.requestTimeout + extraTimeout,
		},
		Logger:       redactingLogger{next: c.logger, secret: c.token},
		RetryWaitMin: c.waitMin,
		RetryWaitMax: c.waitMax,
		RetryMax:     c.maxRetries,
		CheckRetry:   retryablehttp.DefaultRetryPolicy,
		Backoff:      backoff,
		// Hand the last response back after the final retry, so a 429 or
		// 503 still becomes an *Error with the server's problem body.
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
	}
}

// backoff waits as long as the server's Retry-After says, whatever the
// status (retryablehttp's DefaultBackoff only reads it on 429 and 503), and
// otherwise backs off exponentially between min and max.
func backoff(minWait, maxWait time.Duration, attempt int, resp *http.Response) time.Duration {
	if resp != nil {
		if d, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			return d
		}
	}
	return retryablehttp.DefaultBackoff(minWait, maxWait, attempt, nil)
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

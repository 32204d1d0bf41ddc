package siem

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// batch is what one send delivers: records of one source, in order, and
// each encoded in the sink's format.
type batch struct {
	source string
	recs   []Record
	bodies [][]byte
}

// transport carries batches to a receiver.
type transport interface {
	// send delivers b. When it returns nil the receiver has b, except for
	// stream syslog, where it has b if the connection stays up for the
	// sink's settle time (see broken).
	send(ctx context.Context, b batch) error
	// broken is closed when the connection of the last send broke; nil
	// when there is none or the transport acknowledges each send.
	broken() <-chan struct{}
	close() error
}

// retryAfter is a receiver's request to wait before sending again (a
// webhook's 429 or 503 with Retry-After).
type retryAfter struct {
	wait time.Duration
	err  error
}

func (e *retryAfter) Error() string { return e.err.Error() }
func (e *retryAfter) Unwrap() error { return e.err }

// Timeouts of one attempt to reach a receiver.
const (
	dialTimeout  = 10 * time.Second
	writeTimeout = 30 * time.Second
)

func newTransport(s Sink) transport {
	switch s.Scheme {
	case SchemeFile:
		return &fileTransport{path: s.Address}
	case SchemeSyslogUDP:
		return &udpTransport{addr: s.Address}
	case SchemeSyslogTCP, SchemeSyslogTLS:
		return &streamTransport{addr: s.Address, tls: s.TLS}
	case SchemeHTTPS:
		return newWebhook(s)
	}
	panic("siem: no transport for scheme " + s.Scheme) // ParseSink admits none other
}

// fileTransport appends lines to a file and syncs it: a send that
// returned is on disk.
type fileTransport struct {
	path string
	f    *os.File
}

func (t *fileTransport) send(_ context.Context, b batch) error {
	if t.f == nil {
		f, err := os.OpenFile(t.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return err
		}
		t.f = f
	}
	var buf bytes.Buffer
	for _, body := range b.bodies {
		buf.Write(body)
		buf.WriteByte('\n')
	}
	// One write: an O_APPEND file gets whole lines even beside other
	// writers.
	if _, err := t.f.Write(buf.Bytes()); err != nil {
		t.close()
		return err
	}
	if err := t.f.Sync(); err != nil {
		t.close()
		return err
	}
	return nil
}

func (t *fileTransport) broken() <-chan struct{} { return nil }

func (t *fileTransport) close() error {
	if t.f == nil {
		return nil
	}
	err := t.f.Close()
	t.f = nil
	return err
}

// udpTransport sends each message in a datagram of its own (RFC 5426):
// nothing acknowledges them, so delivery over UDP is at most once.
type udpTransport struct {
	addr string
	c    net.Conn
}

func (t *udpTransport) send(ctx context.Context, b batch) error {
	if t.c == nil {
		d := net.Dialer{Timeout: dialTimeout}
		c, err := d.DialContext(ctx, "udp", t.addr)
		if err != nil {
			return err
		}
		t.c = c
	}
	for i, r := range b.recs {
		if _, err := t.c.Write(syslogMessage(r, b.bodies[i])); err != nil {
			t.close()
			return err
		}
	}
	return nil
}

func (t *udpTransport) broken() <-chan struct{} { return nil }

func (t *udpTransport) close() error {
	if t.c == nil {
		return nil
	}
	err := t.c.Close()
	t.c = nil
	return err
}

// streamTransport is syslog over TCP (RFC 6587 octet counting) or TLS
// (RFC 5425). Neither acknowledges a message; a receiver never writes,
// so a read that returns means the connection is gone, and what was
// written shortly before may be lost with it.
type streamTransport struct {
	addr string
	tls  *tls.Config
	c    net.Conn
	gone chan struct{}
	buf  []byte
}

func (t *streamTransport) connect(ctx context.Context) error {
	var c net.Conn
	var err error
	if t.tls != nil {
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: dialTimeout}, Config: t.tls}
		c, err = d.DialContext(ctx, "tcp", t.addr)
	} else {
		d := net.Dialer{Timeout: dialTimeout}
		c, err = d.DialContext(ctx, "tcp", t.addr)
	}
	if err != nil {
		return err
	}
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		var b [512]byte
		for {
			if _, err := c.Read(b[:]); err != nil {
				return
			}
		}
	}()
	t.c, t.gone = c, gone
	return nil
}

func (t *streamTransport) send(ctx context.Context, b batch) error {
	if t.c == nil {
		if err := t.connect(ctx); err != nil {
			return err
		}
	}
	select {
	case <-t.gone:
		t.close()
		return errors.New("the receiver closed the connection")
	default:
	}
	t.buf = t.buf[:0]
	for i, r := range b.recs {
		t.buf = octetCounted(t.buf, syslogMessage(r, b.bodies[i]))
	}
	if err := t.c.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		t.close()
		return err
	}
	if _, err := t.c.Write(t.buf); err != nil {
		t.close()
		return err
	}
	return nil
}

func (t *streamTransport) broken() <-chan struct{} { return t.gone }

func (t *streamTransport) close() error {
	if t.c == nil {
		return nil
	}
	err := t.c.Close()
	t.c, t.gone = nil, nil
	return err
}

// Webhook headers.
const (
	// SignatureHeader carries "sha256=" and the hex HMAC-SHA256 of the
	// body under the sink's secret.
	SignatureHeader = "X-Isolationd-Signature-256"
	// BatchHeader names the batch, "SOURCE:FIRST-LAST" (positions): a
	// batch sent again carries the same name.
	BatchHeader = "X-Isolationd-Batch"
)

// maxRetryAfter bounds how long a receiver's Retry-After holds delivery.
const maxRetryAfter = 10 * time.Minute

// webhook POSTs each batch: a JSON array of the records (json, ocsf) or
// their lines (cef). Any 2xx acknowledges it.
type webhook struct {
	url    string
	name   string // the sink's, without the query
	secret []byte
	format string
	client *http.Client
}

func newWebhook(s Sink) *webhook {
	tr := &http.Transport{
		TLSClientConfig:     s.TLS,
		TLSHandshakeTimeout: dialTimeout,
		DialContext:         (&net.Dialer{Timeout: dialTimeout}).DialContext,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     time.Minute,
		ForceAttemptHTTP2:   true,
	}
	return &webhook{url: s.Address, name: s.Name, secret: s.secret, format: s.Format, client: &http.Client{Transport: tr, Timeout: writeTimeout}}
}

func (w *webhook) send(ctx context.Context, b batch) error {
	body, contentType := w.encode(b)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("User-Agent", appName+"/"+productVersion())
	req.Header.Set(BatchHeader, fmt.Sprintf("%s:%d-%d", b.source, b.recs[0].Pos, b.recs[len(b.recs)-1].Pos))
	if len(w.secret) > 0 {
		req.Header.Set(SignatureHeader, Sign(w.secret, body))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		// Not url.Error's text: it quotes the URL, whose query may hold
		// the receiver's token, and errors reach logs and /readyz.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("POST %s: %w", w.name, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		return nil
	}
	err = fmt.Errorf("the webhook answered %s", resp.Status)
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			return &retryAfter{wait: d, err: err}
		}
	}
	return err
}

func (w *webhook) encode(b batch) ([]byte, string) {
	if w.format == FormatCEF {
		return append(bytes.Join(b.bodies, []byte("\n")), '\n'), "text/plain; charset=utf-8"
	}
	var buf bytes.Buffer
	buf.WriteByte('[')
	buf.Write(bytes.Join(b.bodies, []byte(",")))
	buf.WriteByte(']')
	return buf.Bytes(), "application/json"
}

func (w *webhook) broken() <-chan struct{} { return nil }

func (w *webhook) close() error {
	w.client.CloseIdleConnections()
	return nil
}

// Sign is the value of SignatureHeader for body under secret.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// parseRetryAfter reads Retry-After: seconds or an HTTP date, at most
// maxRetryAfter.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return min(time.Duration(n)*time.Second, maxRetryAfter), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), maxRetryAfter), true
	}
	return 0, false
}

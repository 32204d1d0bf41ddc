package client

import (
	"fmt"
	"strings"
)

// redactingLogger is the only logger the request path writes to. It logs
// the method, the redacted URL and errors, never headers; on top of that,
// every message and value is scrubbed of the token, so the token cannot
// reach a log even if a later change logs more.
type redactingLogger struct {
	next   Logger
	secret string
}

const redacted = "[REDACTED]"

func (l redactingLogger) Debug(msg string, kv ...any) { l.log(Logger.Debug, msg, kv) }
func (l redactingLogger) Info(msg string, kv ...any)  { l.log(Logger.Info, msg, kv) }
func (l redactingLogger) Warn(msg string, kv ...any)  { l.log(Logger.Warn, msg, kv) }
func (l redactingLogger) Error(msg string, kv ...any) { l.log(Logger.Error, msg, kv) }

// log hands the scrubbed message and values to one level of the next
// logger; without one, logging is off.
func (l redactingLogger) log(level func(Logger, string, ...any), msg string, kv []any) {
	if l.next != nil {
		level(l.next, l.scrub(msg), l.scrubAll(kv)...)
	}
}

func (l redactingLogger) scrub(s string) string {
	if l.secret == "" {
		return s
	}
	return strings.ReplaceAll(s, l.secret, redacted)
}

// scrubAll renders every value to a string first, so a secret inside an
// error or a struct is caught as well.
func (l redactingLogger) scrubAll(kv []any) []any {
	out := make([]any, len(kv))
	for i, v := range kv {
		switch v := v.(type) {
		case string:
			out[i] = l.scrub(v)
		case fmt.Stringer:
			out[i] = l.scrub(v.String())
		case error:
			out[i] = l.scrub(v.Error())
		case nil:
			out[i] = v
		default:
			out[i] = l.scrub(fmt.Sprint(v))
		}
	}
	return out
}

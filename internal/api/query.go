package api

import (
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
)

// query parses the request's query string. One that does not parse (a ';'
// separator, a bad %-escape) is refused: url.URL.Query would drop the
// pairs it cannot read, and a dropped filter lists more than was asked.
func query(r *http.Request) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, problem.New(problem.Malformed, "the query string does not parse: %s; separate parameters with '&' and percent-encode reserved characters", err.Error())
	}
	return q, nil
}

// rfc3339 is RFC 3339's date-time, as openapi.json documents it; time.Parse
// alone reads more (a one-digit hour, for one).
var rfc3339 = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$`)

// parseTime reads a time parameter written in RFC 3339.
func parseTime(s string) (time.Time, error) {
	if !rfc3339.MatchString(s) {
		return time.Time{}, errors.New("not an RFC 3339 date-time")
	}
	return time.Parse(time.RFC3339Nano, s)
}

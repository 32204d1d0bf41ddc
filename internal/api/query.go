package api

import (
	"net/http"
	"net/url"
)

// query parses the request's query string. One that does not parse (a ';'
// separator, a bad %-escape) is refused: url.URL.Query would drop the
// pairs it cannot read, and a dropped filter lists more than was asked.
func query(r *http.Request) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, newError(probMalformed, "the query string does not parse: %s; separate parameters with '&' and percent-encode reserved characters", err.Error())
	}
	return q, nil
}

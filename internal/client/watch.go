package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// Watch follows an environment through the server's event stream
// (GET /v1/environments/{id}/watch): it calls emit with the environment as
// it is now and again after every change, such as its workload restarting,
// without polling. It returns nil when ctx is done, emit's first error, an
// error for which IsNotFound is true when the environment does not exist
// or is deleted, and an error when the server ends the stream (it is
// stopping, or the token was revoked). A broken stream is not retried:
// watch again.
func (e *Environments) Watch(ctx context.Context, id string, emit func(apiv1.Environment) error) error {
	path := e.item(id) + "/watch"
	var event string
	var data []byte
	deleted := false
	err := e.c.stream(ctx, streamRequest{path: path, accept: "text/event-stream", follow: true}, func(line []byte) error {
		// Server-Sent Events: "field: value" lines, a blank line ending
		// each event, ":" starting a comment (the keepalives).
		if len(line) == 0 {
			ev, d := event, data
			event, data = "", nil
			switch ev {
			case "environment":
				var env apiv1.Environment
				if err := json.Unmarshal(d, &env); err != nil {
					return &decodeError{err}
				}
				return emit(env)
			case "deleted":
				deleted = true
				return errWatchEnded
			}
			return nil
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "event":
			event = string(value)
		case "data":
			if data != nil {
				data = append(data, '\n')
			}
			data = append(data, value...)
		}
		return nil
	})
	switch {
	case deleted:
		return &Error{StatusCode: http.StatusNotFound, method: http.MethodGet, path: path,
			Problem: apiv1.Problem{Status: http.StatusNotFound, Title: http.StatusText(http.StatusNotFound), Detail: "the environment was deleted"}}
	case err != nil:
		return err
	case ctx.Err() == nil:
		return fmt.Errorf("GET %s: the server ended the stream", path)
	}
	return nil
}

// errWatchEnded stops reading a watch stream that told its last event.
var errWatchEnded = errors.New("the watch ended")

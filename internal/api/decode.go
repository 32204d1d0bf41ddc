package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
)

// MaxBodyBytes bounds every request body.
const MaxBodyBytes = 1 << 20

// readBody is the one step that reads the body of a route that takes one
// (bounded by MaxBodyBytes), before authorization: authorize reads its
// project_id, the idempotency check hashes it and decode decodes it, all
// from the same bytes. It runs after the in-flight mark of the request's
// Idempotency-Key is taken, so a request whose body is still arriving
// holds its key.
func readBody(r *http.Request) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return problem.New(problem.MediaType, "Content-Type must be application/json, not %q", ct)
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return problem.New(problem.TooLarge, "the request body is larger than %d bytes", MaxBodyBytes)
		}
		return problem.New(problem.Malformed, "the request body could not be read")
	}
	requestInfoFrom(r.Context()).body = body
	return nil
}

// decode reads the body as exactly one JSON value of v's type. Unknown
// fields, wrong types, malformed JSON and trailing data are 400 problems
// naming the field where JSON tells us which.
func decode(r *http.Request, v any) error {
	body := requestInfoFrom(r.Context()).body
	if len(bytes.TrimSpace(body)) == 0 {
		return problem.New(problem.Malformed, "the request body is empty; send a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return problem.New(problem.Malformed, "the request body has data after the JSON value")
	}
	return exactFieldNames(body, reflect.TypeOf(v))
}

// decodeValid is decode followed by the body's own Validate, as every
// handler that takes a body wants: a 400 naming each field that breaks a rule.
func decodeValid(r *http.Request, in interface {
	Validate() []apiv1.FieldError
}) error {
	if err := decode(r, in); err != nil {
		return err
	}
	if fe := in.Validate(); fe != nil {
		return problem.Invalid(fe)
	}
	return nil
}

func decodeError(err error) *problem.Error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return problem.New(problem.Malformed, "the request body is not valid JSON (at byte %d): %s", syntax.Offset, syntax.Error())
	case errors.Is(err, io.ErrUnexpectedEOF):
		return problem.New(problem.Malformed, "the request body is truncated JSON")
	case errors.As(err, &typ):
		if typ.Field == "" {
			return problem.New(problem.Malformed, "the request body must be a JSON %s, not %s", jsonKind(typ.Type.Kind().String()), typ.Value)
		}
		return problem.Field(problem.Malformed, typ.Field, fmt.Sprintf("must be %s, not %s", jsonKind(typ.Type.String()), typ.Value))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return problem.Field(problem.Malformed, field, "is not a known field")
	}
	return problem.New(problem.Malformed, "the request body could not be decoded: %s", err.Error())
}

// jsonKind names a Go type the way a JSON user thinks of it.
func jsonKind(goType string) string {
	switch {
	case strings.HasPrefix(goType, "*"):
		return jsonKind(goType[1:])
	case goType == "string":
		return "a string"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "an integer"
	case strings.HasPrefix(goType, "float"):
		return "a number"
	case goType == "bool":
		return "a boolean"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case strings.HasPrefix(goType, "map["), goType == "struct":
		return "an object"
	case goType == "time.Time":
		return "an RFC 3339 time string"
	}
	return "an object"
}

package api

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
)

// exactFieldNames refuses a body whose object keys name a field of v's type
// in another case ("nAme"): encoding/json matches keys without regard to
// case, so such a body would be read although openapi.json and every
// other JSON reader refuse it, and {"name":…,"NAME":…} would take the last.
// data has already decoded into v, so it is valid JSON.
func exactFieldNames(data []byte, t reflect.Type) error {
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil
	}
	if path, ok := inexactKey(doc, t, ""); !ok {
		return problem.Field(problem.Malformed, path, "is not a known field (field names are case-sensitive)")
	}
	return nil
}

var timeType = reflect.TypeFor[time.Time]()

// inexactKey walks doc beside t and returns the path of the first key that
// is not exactly a JSON field name of the struct it belongs to.
func inexactKey(doc any, t reflect.Type, path string) (string, bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	// A PATCH's nullable field (apiv1.Nullable) is its value in JSON.
	if n, ok := reflect.Zero(t).Interface().(interface{ ValueType() reflect.Type }); ok {
		t = n.ValueType()
	}
	switch v := doc.(type) {
	case map[string]any:
		switch {
		case t.Kind() == reflect.Map:
			for k, el := range v {
				if p, ok := inexactKey(el, t.Elem(), path+"["+strconv.Quote(k)+"]"); !ok {
					return p, false
				}
			}
		case t.Kind() == reflect.Struct && t != timeType:
			fields := jsonFields(t)
			for k, el := range v {
				ft, found := fields[k]
				p := k
				if path != "" {
					p = path + "." + k
				}
				if !found {
					return p, false
				}
				if p, ok := inexactKey(el, ft, p); !ok {
					return p, false
				}
			}
		}
	case []any:
		if t.Kind() == reflect.Slice {
			for i, el := range v {
				if p, ok := inexactKey(el, t.Elem(), path+"["+strconv.Itoa(i)+"]"); !ok {
					return p, false
				}
			}
		}
	}
	return "", true
}

// fieldsByType caches jsonFields: the request types are few and fixed, and
// every write body is checked.
var fieldsByType sync.Map // reflect.Type -> map[string]reflect.Type

// jsonFields maps the JSON names of a struct's fields, embedded structs'
// included, to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	if m, ok := fieldsByType.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	m := structFields(t)
	fieldsByType.Store(t, m)
	return m
}

func structFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		sf := t.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		switch {
		case name == "-" || !sf.IsExported():
		case sf.Anonymous && name == "":
			for k, v := range structFields(sf.Type) {
				out[k] = v
			}
		case name == "":
			out[sf.Name] = sf.Type
		default:
			out[name] = sf.Type
		}
	}
	return out
}

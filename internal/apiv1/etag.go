package apiv1

import "strconv"

// ETag is the ETag of an object at a generation: strong and quoted, as
// the ETag header and every object's etag field carry it.
func ETag(generation int64) string { return `"` + strconv.FormatInt(generation, 10) + `"` }

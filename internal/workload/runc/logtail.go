package runc

import (
	"encoding/json"
	"path/filepath"
	"strings"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// lastLines is the end of the workload's output in dir, for messages.
func lastLines(dir string, n int) string {
	var out []string
	for _, l := range strings.Split(tailFile(filepath.Join(dir, "current")), "\n") {
		var line apiv1.LogLine
		if json.Unmarshal([]byte(l), &line) == nil {
			out = append(out, line.Line)
		}
	}
	return strings.Join(out[max(len(out)-n, 0):], "\n")
}

package runc

import (
	"context"
	"strings"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload/logs"
)

// lastLines is the end of the workload's output in dir, for messages.
func lastLines(dir string, n int) string {
	var out []string
	logs.Read(context.Background(), dir, logs.Query{Tail: n}, func(l apiv1.LogLine) error {
		out = append(out, l.Line)
		return nil
	})
	return strings.Join(out, "\n")
}

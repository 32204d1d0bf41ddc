package validators

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/hashicorp/terraform-plugin-framework/schema/validator"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// ResourceField checks one field of an environment's resources
// (cpu_millis, memory_mb, disk_gb or max_processes) against the API's
// range for it.
func ResourceField(name string) validator.Int64 {
	return int64Check{
		description: "must be within the API's range for resources." + name,
		check: func(v int64) string {
			spec := &apiv1.ResourcesSpec{}
			switch name {
			case "cpu_millis":
				spec.CPUMillis = &v
			case "memory_mb":
				spec.MemoryMB = &v
			case "disk_gb":
				spec.DiskGB = &v
			case "max_processes":
				spec.MaxProcesses = &v
			}
			if errs := apiv1.ValidateResources("", spec); len(errs) > 0 {
				return errs[0].Message
			}
			return ""
		},
	}
}

// TTLSeconds checks an environment's time to live. Zero is not allowed in
// configuration: leaving the attribute out means "no TTL".
func TTLSeconds() validator.Int64 {
	return int64Check{
		description: fmt.Sprintf("must be between 1 and %d seconds", apiv1.MaxTTLSeconds),
		check: func(v int64) string {
			if v < 1 || v > apiv1.MaxTTLSeconds {
				return fmt.Sprintf("must be between 1 and %d seconds (one year); remove the attribute for no TTL", apiv1.MaxTTLSeconds)
			}
			return ""
		},
	}
}

// EnvironmentQuota checks a project's environment quota with
// apiv1.ValidateEnvironmentQuota.
func EnvironmentQuota() validator.Int64 {
	return int64Check{
		description: fmt.Sprintf("must be between 0 (no limit) and %d", apiv1.MaxEnvironmentQuota),
		check: func(v int64) string {
			if errs := apiv1.ValidateEnvironmentQuota("", v); len(errs) > 0 {
				return errs[0].Message
			}
			return ""
		},
	}
}

type int64Check struct {
	description string
	check       func(int64) string
}

func (v int64Check) Description(context.Context) string         { return v.description }
func (v int64Check) MarkdownDescription(context.Context) string { return v.description }

func (v int64Check) ValidateInt64(_ context.Context, req validator.Int64Request, resp *validator.Int64Response) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if msg := v.check(req.ConfigValue.ValueInt64()); msg != "" {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid "+attrName(req.Path),
			fmt.Sprintf("%s %s, got %d.", attrName(req.Path), msg, req.ConfigValue.ValueInt64()))
	}
}

// CheckHTTPURL checks that v is an absolute http(s) URL without credentials.
func CheckHTTPURL(v string) error {
	u, err := url.Parse(v)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https"):
		return errors.New("must be an http or https URL such as https://isolation.example.com")
	case u.User != nil:
		return errors.New("must not contain credentials (use the token)")
	}
	return nil
}

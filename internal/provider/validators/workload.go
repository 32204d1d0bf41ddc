package validators

import (
	"strings"

	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/provider/workloadspec"
)

// ImageRef checks a workload's image with apiv1.ValidateImageRef: a local
// image's name or a registry reference. Whether the image exists is the
// server's to say, at apply time.
func ImageRef() validator.String {
	return APIString("must be an image reference: a local image name or [registry/]repository[:tag][@sha256:digest]", apiv1.ValidateImageRef)
}

// RestartPolicy checks a workload's restart policy: one of apiv1.RestartPolicies.
func RestartPolicy() validator.String { return stringvalidator.OneOf(apiv1.RestartPolicies...) }

// Workload checks a whole workload with apiv1.WorkloadSpec.Validate once
// every part of it is known: environment variable names, NUL bytes, an
// empty program name, an absolute working_dir and the limits on entries
// and bytes. The image and the restart policy are left to ImageRef and
// RestartPolicy, which check them on their own, so an unknown command
// never hides a malformed image and no error is reported twice.
func Workload() validator.Object {
	return apiObject[apiv1.WorkloadSpec]{
		description: "environment variable names must be letters, digits and '_', not starting with a digit; " +
			"working_dir must be an absolute path; command, args and env must stay within the API's limits",
		convert: workloadspec.FromObject,
		check: func(field string, w apiv1.WorkloadSpec) []apiv1.FieldError {
			var out []apiv1.FieldError
			for _, fe := range w.Validate(field) {
				if !under(fe.Field, workloadspec.AttrImage) && !under(fe.Field, workloadspec.AttrRestart) {
					out = append(out, fe)
				}
			}
			return out
		},
	}
}

// under reports whether an apiv1 field path names attr or a part of it.
func under(field, attr string) bool {
	rest, ok := strings.CutPrefix(field, attr)
	return ok && (rest == "" || rest[0] == '.' || rest[0] == '[')
}

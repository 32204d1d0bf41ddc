package main

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/isolationhq/terraform-provider-isolation/internal/api"
	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// parseRoleRateLimits reads the --rate-limit-role flag: per-role limits
// written as "viewer=5,editor=20:40", role=requests-per-second,
// optionally :burst. A rate of 0 lifts the limit for that role.
func parseRoleRateLimits(s string) (map[string]api.RateLimit, error) {
	out := map[string]api.RateLimit{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		role, spec, ok := strings.Cut(part, "=")
		role = strings.TrimSpace(role)
		if !ok || !slices.Contains(apiv1.Roles, role) {
			return nil, fmt.Errorf("%q: want role=rate[:burst] with role one of %s", part, strings.Join(apiv1.Roles, ", "))
		}
		if _, dup := out[role]; dup {
			return nil, fmt.Errorf("role %s is given twice", role)
		}
		rateText, burstText, hasBurst := strings.Cut(spec, ":")
		var rl api.RateLimit
		var err error
		if rl.PerSecond, err = strconv.ParseFloat(strings.TrimSpace(rateText), 64); err != nil || rl.PerSecond < 0 || math.IsInf(rl.PerSecond, 0) || math.IsNaN(rl.PerSecond) {
			return nil, fmt.Errorf("%q: the rate must be a number of requests per second, 0 or more", part)
		}
		if hasBurst {
			if rl.Burst, err = strconv.Atoi(strings.TrimSpace(burstText)); err != nil || rl.Burst < 1 {
				return nil, fmt.Errorf("%q: the burst must be a whole number, 1 or more", part)
			}
		}
		out[role] = rl
	}
	return out, nil
}

// stringsFlag is a flag given any number of times, its values in order.
type stringsFlag []string

func (f *stringsFlag) String() string { return strings.Join(*f, ",") }

func (f *stringsFlag) Set(v string) error {
	*f = append(*f, v)
	return nil
}

package netns_test

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkVerify_300Environments times one Verify sweep over 300
// environments with nothing drifted: what the reconciler spends every
// second, reported as CPU time per sweep and as a share of one core at
// one sweep a second.
func BenchmarkVerify_300Environments(b *testing.B) {
	l := newLab(b)
	ctx := context.Background()
	const n = 300
	addr := func(i int) string { return fmt.Sprintf("198.18.%d.%d", 1+i/200, 10+i%200) }
	parallel(b, n, func(i int) error { return provisionAndApply(ctx, l, fmt.Sprint("env-", i), addr(i), typicalPolicy()) })
	var sweeps int
	var took time.Duration
	for b.Loop() {
		start := time.Now()
		drifts, err := l.d.Verify(ctx)
		took += time.Since(start)
		sweeps++
		if err != nil || len(drifts) != 0 {
			b.Fatalf("Verify: %v, %v; nothing drifted", drifts, err)
		}
	}
	per := took / time.Duration(sweeps)
	b.ReportMetric(float64(per.Microseconds())/1000, "sweep-ms")
	b.ReportMetric(100*per.Seconds(), "core-%-at-1Hz")
}

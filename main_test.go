package main

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSilenceUnwantedLogs_OnlyWhenTerraformWouldDiscardThem(t *testing.T) {
	t.Parallel()
	allOff := map[string]string{"TF_LOG_SDK": "OFF", "TF_LOG_SDK_PROTO": "OFF", "TF_LOG_SDK_FRAMEWORK": "OFF", "TF_LOG_PROVIDER_ISOLATION": "OFF"}
	tests := []struct {
		name string
		env  map[string]string
		want map[string]string
	}{
		{"no logging asked for: silenced", map[string]string{}, allOff},
		{"TF_LOG set: untouched", map[string]string{"TF_LOG": "TRACE"}, map[string]string{"TF_LOG": "TRACE"}},
		{"TF_LOG_PROVIDER set: untouched", map[string]string{"TF_LOG_PROVIDER": "DEBUG"}, map[string]string{"TF_LOG_PROVIDER": "DEBUG"}},
		{"an explicit SDK level is kept", map[string]string{"TF_LOG_SDK_PROTO": "TRACE"}, map[string]string{
			"TF_LOG_SDK": "OFF", "TF_LOG_SDK_PROTO": "TRACE", "TF_LOG_SDK_FRAMEWORK": "OFF", "TF_LOG_PROVIDER_ISOLATION": "OFF",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{}
			for k, v := range tc.env {
				env[k] = v
			}
			silenceUnwantedLogs(func(k string) string { return env[k] }, func(k, v string) error { env[k] = v; return nil })
			if diff := cmp.Diff(tc.want, env); diff != "" {
				t.Errorf("environment (-want +got):\n%s", diff)
			}
		})
	}
}

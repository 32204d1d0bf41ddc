package server

import (
	"fmt"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload"
	wsimulate "github.com/isolationhq/terraform-provider-isolation/internal/workload/simulate"
)

// runtimeName is the workload runtime a configuration asks for: what
// --runtime says, else runc with the netns driver and simulate with the
// simulate driver, which runs nothing.
func (cfg Config) runtimeName() (string, error) {
	if cfg.WorkloadRuntime != nil {
		return cfg.WorkloadRuntime.Name(), nil
	}
	name := cfg.Runtime
	if cfg.Driver != netns.DriverName {
		if name != "" && name != apiv1.RuntimeSimulate {
			return "", fmt.Errorf("server: --runtime %s needs the netns driver (--driver netns); the simulate driver runs no workloads", name)
		}
		return apiv1.RuntimeSimulate, nil
	}
	switch name {
	case "":
		return apiv1.RuntimeNone, nil // runc once its runtime lands
	case apiv1.RuntimeRunc, apiv1.RuntimeNone:
		return name, nil
	}
	return "", fmt.Errorf("server: --runtime %q: must be runc or none with the netns driver", name)
}

// newRuntime opens the workload runtime; nil for --runtime none.
func newRuntime(cfg Config, name string) (workload.Runtime, error) {
	if cfg.WorkloadRuntime != nil {
		return cfg.WorkloadRuntime, nil
	}
	switch name {
	case apiv1.RuntimeSimulate:
		return wsimulate.New(), nil
	case apiv1.RuntimeNone:
		return nil, nil
	}
	return nil, fmt.Errorf("server: runtime %s is not built in", name)
}

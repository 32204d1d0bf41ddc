// Command terraform-provider-isolation is the isolation Terraform provider.
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"runtime/debug"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"

	"github.com/isolationhq/terraform-provider-isolation/internal/provider"
)

// version is set by the release build (-ldflags "-X main.version=1.2.3").
var version = "dev"

func main() {
	// A provider process lives for one Terraform command and holds little:
	// collecting less often buys CPU that plans of many resources need.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}

	var debugMode bool
	flag.BoolVar(&debugMode, "debug", false, "run the provider with support for debuggers like delve")
	flag.Parse()

	if !debugMode {
		silenceUnwantedLogs(os.Getenv, os.Setenv)
	}
	err := providerserver.Serve(context.Background(), provider.New(version), providerserver.ServeOpts{
		Address: "registry.terraform.io/isolationhq/isolation",
		Debug:   debugMode,
	})
	if err != nil {
		log.Fatal(err.Error())
	}
}

// Log levels of the plugin SDK's loggers, as terraform-plugin-log reads them.
var sdkLogLevelVars = []string{"TF_LOG_SDK", "TF_LOG_SDK_PROTO", "TF_LOG_SDK_FRAMEWORK", "TF_LOG_PROVIDER_ISOLATION"}

// silenceUnwantedLogs turns the provider's logs off at the source when
// Terraform would throw them away. By default the plugin SDK logs every RPC
// at TRACE, as JSON on stderr, for Terraform to filter; Terraform keeps
// provider logs only when TF_LOG or TF_LOG_PROVIDER is set. Without either,
// encoding and then discarding them costs both processes a third of the
// provider's CPU time. Any level the user set explicitly is left alone.
func silenceUnwantedLogs(getenv func(string) string, setenv func(string, string) error) {
	if getenv("TF_LOG") != "" || getenv("TF_LOG_PROVIDER") != "" {
		return
	}
	for _, v := range sdkLogLevelVars {
		if getenv(v) == "" {
			_ = setenv(v, "OFF")
		}
	}
}

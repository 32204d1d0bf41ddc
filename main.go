// Command terraform-provider-isolation is the isolation Terraform provider.
package main

import (
	"context"
	"flag"
	"log"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"

	"github.com/isolationhq/terraform-provider-isolation/internal/provider"
)

// version is set by the release build (-ldflags "-X main.version=1.2.3").
var version = "dev"

func main() {
	var debug bool
	flag.BoolVar(&debug, "debug", false, "run the provider with support for debuggers like delve")
	flag.Parse()

	err := providerserver.Serve(context.Background(), provider.New(version), providerserver.ServeOpts{
		Address: "registry.terraform.io/isolationhq/isolation",
		Debug:   debug,
	})
	if err != nil {
		log.Fatal(err.Error())
	}
}

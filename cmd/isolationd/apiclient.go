package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/isolationhq/terraform-provider-isolation/internal/client"
)

// Environment variables of the commands that talk to a running isolationd
// over its API, named as the provider's.
const (
	envEndpoint  = "ISOLATION_ENDPOINT"
	envToken     = "ISOLATION_TOKEN"
	envCACertPEM = "ISOLATION_CA_CERT_PEM"
	envInsecure  = "ISOLATION_INSECURE"
)

// apiClient is the API client of ISOLATION_ENDPOINT and ISOLATION_TOKEN
// (and ISOLATION_CA_CERT_PEM, ISOLATION_INSECURE), as the provider reads them.
func apiClient() (*client.Client, error) {
	cfg := client.Config{
		Endpoint:  os.Getenv(envEndpoint),
		Token:     os.Getenv(envToken),
		CACertPEM: os.Getenv(envCACertPEM),
		UserAgent: "isolationd-cli",
	}
	if cfg.Endpoint == "" || cfg.Token == "" {
		return nil, fmt.Errorf("set %s to the server's URL and %s to an API token", envEndpoint, envToken)
	}
	if s := os.Getenv(envInsecure); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return nil, fmt.Errorf("%s=%q: must be true or false", envInsecure, s)
		}
		cfg.Insecure = b
	}
	c, err := client.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s, %s: %w", envEndpoint, envToken, err)
	}
	return c, nil
}

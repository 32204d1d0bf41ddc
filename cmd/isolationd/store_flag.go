package main

import (
	"flag"
	"os"
)

// envStore is the environment variable --store defaults to.
const envStore = "ISOLATION_STORE"

const storeFlagHelp = "where the state is kept: sqlite (the file in --data-dir), sqlite:PATH, or a postgres:// or postgresql:// URL " +
	"that several replicas share (default: $" + envStore + ", else sqlite); the data directory still holds admin.token and images"

// storeValue is the --store flag of fs once parsed, ISOLATION_STORE when
// it was not given, else sqlite. The variable is not the flag's default:
// -h prints defaults, and the URL may hold a password.
func storeValue(fs *flag.FlagSet, flagValue string) string {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "store" })
	if v := os.Getenv(envStore); !given && v != "" {
		return v
	}
	return flagValue
}

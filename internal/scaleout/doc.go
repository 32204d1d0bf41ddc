// Package scaleout holds no code: its tests are the proof that isolationd
// scales out (issue 15). Two replicas on one PostgreSQL database, started
// as processes by internal/replicatest behind a round-robin TCP front end,
// take a Terraform apply of 200 environments and 20 policies, with one of
// them killed with SIGKILL midway, and keep the API's promises across
// replicas: Idempotency-Key, If-Match, token revocation, long polls and
// watch streams, and one audit chain.
//
// The tests need a PostgreSQL server (ISOLATION_TEST_POSTGRES, which
// `make test` starts; internal/store/pgtest) and skip, saying so, without
// one; the Terraform ones also need TF_ACC and the CLI, as the provider's
// acceptance tests do.
package scaleout

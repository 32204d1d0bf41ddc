// Package archtest holds no code: its tests check the import arrows of the
// whole module (README, package docs) over the graph `go list` reports, so a
// change that makes the provider or the client reach a server package, or
// anything but internal/server import the reconciler, fails `go test ./...`.
// depguard in .golangci.yml checks the same arrows file by file, as you edit.
package archtest

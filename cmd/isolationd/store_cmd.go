package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/isolationhq/terraform-provider-isolation/internal/audit"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// locate reads a --store and --data-dir pair: the store named, a SQLite
// file without a path being the one in the data directory.
func locate(storeFlag, dataDir string) (store.Location, error) {
	loc, err := store.ParseLocation(storeFlag)
	if err != nil {
		return loc, fmt.Errorf("--store: %w", err)
	}
	if loc.Kind == store.KindSQLite && loc.Path == "" {
		if dataDir == "" {
			return loc, fmt.Errorf("--data-dir or --store is required")
		}
		loc.Path = filepath.Join(dataDir, server.DatabaseFile)
	}
	return loc, nil
}

// migrate applies the embedded migrations and prints the schema
// version.
func migrate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	storeFlag := fs.String("store", "sqlite", storeFlagHelp)
	dataDir := fs.String("data-dir", "", "isolationd's data directory, whose SQLite file --store sqlite means")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	loc, err := locate(storeValue(fs, *storeFlag), *dataDir)
	if err != nil {
		fmt.Fprintf(stderr, "isolationd migrate: %v\n", err)
		return 2
	}
	ctx := context.Background()
	st, err := store.Open(ctx, loc)
	if err != nil {
		fmt.Fprintf(stderr, "isolationd migrate: %s: %s\n", loc, store.RedactDSN(err.Error()))
		return 1
	}
	defer st.Close()
	current, want, err := st.SchemaVersion(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "isolationd migrate: %s: %s\n", loc, store.RedactDSN(err.Error()))
		return 1
	}
	if current != want {
		fmt.Fprintf(stderr, "isolationd migrate: %s: schema version %d after migrating, want %d\n", loc, current, want)
		return 1
	}
	fmt.Fprintf(stdout, "%s: schema version %d (current)\n", loc, current)
	return 0
}

// storeCopy moves a deployment's state from one store to an empty one:
// isolationd store copy --from sqlite:PATH --to postgres://...
func storeCopy(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("store copy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fromFlag := fs.String("from", "", "the store to copy: sqlite:PATH (opened read-only; stop the server first) or a postgres:// URL (required)")
	toFlag := fs.String("to", "", "the empty store to copy into, migrated first: a postgres:// URL or sqlite:PATH (required)")
	keyFile := fs.String("hmac-key-file", "", "the HMAC key the audit chain was sealed with (serve --audit-hmac-key-file); required to verify a keyed chain")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "isolationd store copy: "+format+"\n", a...)
		return code
	}
	if *fromFlag == "" || *toFlag == "" {
		return fail(2, "--from and --to are required")
	}
	from, err := store.ParseLocation(*fromFlag)
	if err != nil || (from.Kind == store.KindSQLite && from.Path == "") {
		return fail(2, "--from: %v", cmpErr(err, "write sqlite:PATH, the database file to copy"))
	}
	to, err := store.ParseLocation(*toFlag)
	if err != nil || (to.Kind == store.KindSQLite && to.Path == "") {
		return fail(2, "--to: %v", cmpErr(err, "write a postgres:// URL or sqlite:PATH"))
	}
	key, err := readKey(*keyFile)
	if err != nil {
		return fail(2, "--hmac-key-file: %v", err)
	}
	ctx := context.Background()
	src, err := openCopySource(ctx, from)
	if err != nil {
		return fail(1, "--from %s: %s", from, store.RedactDSN(err.Error()))
	}
	defer src.Close()
	dst, err := store.Open(ctx, to)
	if err != nil {
		return fail(1, "--to %s: %s", to, store.RedactDSN(err.Error()))
	}
	defer dst.Close()
	target, ok := dst.(store.Copyable)
	if !ok {
		return fail(1, "--to %s: this store cannot be copied into", to)
	}
	rep, err := store.Copy(ctx, src, target)
	if err != nil {
		return fail(1, "%s", store.RedactDSN(err.Error()))
	}
	for _, d := range rep.Tables {
		fmt.Fprintf(stdout, "%-20s %8d rows  sha256 %s\n", d.Table, d.Rows, d.Digest)
	}
	fmt.Fprintf(stdout, "next flow id %d\n", rep.FlowSeq)
	// The chain must verify on the target as it did on the source.
	want, err := store.VerifyAuditWithKey(ctx, src.(store.Reader), key)
	if err != nil {
		return fail(1, "verify the source's audit chain: %v", err)
	}
	got, err := store.VerifyAuditWithKey(ctx, dst, key)
	if err != nil {
		return fail(1, "verify the target's audit chain: %v", err)
	}
	if got.OK() != want.OK() || got.Events != want.Events || got.LastSeq != want.LastSeq || got.LastHash != want.LastHash {
		return fail(1, "the target's audit chain (%d events, last seq %d, hash %s, intact %v) differs from the source's (%d events, last seq %d, hash %s, intact %v)",
			got.Events, got.LastSeq, got.LastHash, got.OK(), want.Events, want.LastSeq, want.LastHash, want.OK())
	}
	if !got.OK() {
		fmt.Fprintf(stdout, "audit chain copied as it was, NOT verified: %s\n", got.Broken.String())
		return 1
	}
	fmt.Fprintf(stdout, "copied %s to %s: every table's rows and digest match; audit chain intact on the target: %d events, last seq %d, last hash %s; %s\n",
		from, to, got.Events, got.LastSeq, got.LastHash, keyedness(got))
	return 0
}

// copySource is a store copy's source: read, never written.
type copySource interface {
	store.Copyable
	Close() error
}

// openCopySource opens a SQLite source read-only (it must exist and be
// of this build's schema), a PostgreSQL one as a store.
func openCopySource(ctx context.Context, loc store.Location) (copySource, error) {
	if loc.Kind == store.KindSQLite {
		return store.OpenSQLiteReadOnly(ctx, loc.Path)
	}
	st, err := store.Open(ctx, loc)
	if err != nil {
		return nil, err
	}
	c, ok := st.(copySource)
	if !ok {
		st.Close()
		return nil, fmt.Errorf("this store cannot be copied from")
	}
	return c, nil
}

func cmpErr(err error, otherwise string) any {
	if err != nil {
		return err
	}
	return otherwise
}

// readKey reads an audit HMAC key file, nil for none.
func readKey(path string) (*audit.Key, error) {
	if path == "" {
		return nil, nil
	}
	return audit.ReadKeyFile(path)
}

// openAuditReader opens where audit verify and export read: a SQLite
// file read-only (the server may be running on it, and reading must
// neither migrate it nor start a second writer next to it), or the
// PostgreSQL database several servers share.
func openAuditReader(ctx context.Context, loc store.Location) (store.Reader, func() error, error) {
	if loc.Kind == store.KindSQLite {
		r, err := store.OpenSQLiteReadOnly(ctx, loc.Path)
		if err != nil {
			return nil, nil, err
		}
		return r, r.Close, nil
	}
	st, err := store.Open(ctx, loc)
	if err != nil {
		return nil, nil, err
	}
	return st, st.Close, nil
}

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/isolationhq/terraform-provider-isolation/internal/server"
	"github.com/isolationhq/terraform-provider-isolation/internal/siem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// repeated is a flag given any number of times (--siem, --siem-config).
// String shows how many, never the values: a --siem URL may hold a
// webhook secret.
type repeated []string

func (r *repeated) String() string {
	if r == nil || len(*r) == 0 {
		return ""
	}
	return fmt.Sprintf("%d given", len(*r))
}

func (r *repeated) Set(s string) error {
	*r = append(*r, s)
	return nil
}

const siemFlagHelp = "export the audit trail to a SIEM sink (repeatable): syslog+udp://HOST:PORT, syslog+tcp://HOST:PORT (RFC 6587 octet counting), " +
	"syslog+tls://HOST:PORT (RFC 5425), https://HOST/PATH (webhook) or file:///PATH, with ?format=json|ocsf|cef&events=audit,flows,denials" +
	"&ca=FILE&cert=FILE&key=FILE&secret_file=FILE&retention=N&lag_alert=DURATION (README, SIEM export)"

// auditExport writes a range of the audit chain in a SIEM format, for
// backfill: from the server's database, read-only, beside a running server.
func auditExport(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("audit export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "", "isolationd's data directory (required)")
	since := fs.Int64("since", 1, "the first audit seq to write")
	until := fs.Int64("until", 0, "the last audit seq to write (0: the newest)")
	format := fs.String("format", siem.FormatJSON, "json (events as the API shows them), ocsf (OCSF "+siem.OCSFVersion+") or cef")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	switch {
	case *dataDir == "":
		fmt.Fprintln(stderr, "isolationd audit export: --data-dir is required")
		return 2
	case *since < 1:
		fmt.Fprintf(stderr, "isolationd audit export: --since %d: audit seqs start at 1\n", *since)
		return 2
	case *until != 0 && *until < *since:
		fmt.Fprintf(stderr, "isolationd audit export: --until %d is before --since %d\n", *until, *since)
		return 2
	}
	if _, err := siem.FormatterFor(*format); err != nil {
		fmt.Fprintf(stderr, "isolationd audit export: --format: %v\n", err)
		return 2
	}
	ctx := context.Background()
	st, err := store.OpenSQLiteReadOnly(ctx, filepath.Join(*dataDir, server.DatabaseFile))
	if err != nil {
		fmt.Fprintf(stderr, "isolationd audit export: %v\n", err)
		return 1
	}
	defer st.Close()
	n, err := siem.Export(ctx, siem.AuditSource{Store: st}, *since, *until, *format, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "isolationd audit export: after %d events: %v\n", n, err)
		return 1
	}
	fmt.Fprintf(stderr, "isolationd audit export: %d events\n", n)
	return 0
}

package store_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// crashChildEnv names the database a re-executed test binary writes to
// until it is killed.
const crashChildEnv = "STORE_TEST_CRASH_CHILD_DB"

func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(path)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashChild creates environments from many goroutines, each with its
// audit event, and prints the id of each one whose Update returned nil.
func crashChild(path string) {
	ctx := context.Background()
	s, err := store.OpenSQLite(ctx, path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	p := apiv1.Project{ID: "prj_crash", Name: "crash"}
	if err := s.Update(ctx, func(tx store.Tx) error { return tx.CreateProject(ctx, p) }); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	deadline := time.Now().Add(time.Minute) // the parent kills us long before
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				e := benchEnv(p.ID, w*1_000_000+i)
				err := s.Update(ctx, func(tx store.Tx) error {
					if err := tx.CreateEnvironment(ctx, e); err != nil {
						return err
					}
					_, err := tx.AppendAudit(ctx, apiv1.AuditEvent{ID: "evt_" + uuid.Must(uuid.NewV7()).String(), Time: time.Now(), Action: "environment.create", ProjectID: p.ID,
						Resource: apiv1.ResourceRef{Type: "environment", ID: e.ID}, Outcome: apiv1.OutcomeSuccess})
					return err
				})
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				mu.Lock()
				fmt.Fprintln(os.Stdout, e.ID) // unbuffered: written once acknowledged
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

func TestSQLite_AcknowledgedUpdatesSurviveKill9(t *testing.T) {
	path := filepath.Join(t.TempDir(), "isolationd.db")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]bool{}
	sc := bufio.NewScanner(out)
	// Kill fails only for a child already gone, which needs no kill.
	timeout := time.AfterFunc(60*time.Second, func() { _ = cmd.Process.Kill() })
	defer timeout.Stop()
	for sc.Scan() {
		acked[sc.Text()] = true
		if len(acked) == 3000 {
			// Mid-burst: sixteen writers have Updates in flight.
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Lines written before the kill are acknowledged too; the scanner has
	// read them all by EOF.
	_ = cmd.Wait()
	if len(acked) < 3000 {
		t.Fatalf("child acknowledged only %d creates before it stopped", len(acked))
	}

	s := openSQLite(t, path)
	defer s.Close()
	ctx := context.Background()
	stored := map[string]bool{}
	for q := (store.ListQuery{Limit: store.MaxLimit}); ; {
		envs, next, err := s.ListEnvironments(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range envs {
			stored[e.ID] = true
		}
		if next == "" {
			break
		}
		q.Cursor = next
	}
	for id := range acked {
		if !stored[id] {
			t.Fatalf("acknowledged environment %s lost in the crash (%d acknowledged, %d stored)", id, len(acked), len(stored))
		}
	}
	// Each stored environment came with exactly one audit event, chained.
	res, err := store.VerifyAudit(ctx, s)
	if err != nil || !res.OK() {
		t.Fatalf("audit chain after the crash: %+v, %v", res, err)
	}
	if res.Events != int64(len(stored)) {
		t.Fatalf("%d audit events for %d environments", res.Events, len(stored))
	}
	t.Logf("%d acknowledged, %d stored (the rest were in flight)", len(acked), len(stored))
}

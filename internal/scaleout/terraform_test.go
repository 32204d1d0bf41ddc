package scaleout

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/devrun"
	"github.com/isolationhq/terraform-provider-isolation/internal/replicatest"
)

// The configuration the issue sets: 200 environments and 20 policies in
// one project, each policy selecting the ten environments of its tier and
// letting in one address block (environment peers would pass the project's
// limit of 2,000 resolved peers: 20 of them times 200 environments).
const (
	environments = 200
	policies     = 20
)

var scaleHCL = fmt.Sprintf(`
terraform {
  required_providers {
    isolation = { source = "isolationhq/isolation" }
  }
}

resource "isolation_project" "scale" {
  name = "scale-out"
}

resource "isolation_environment" "e" {
  count      = %[1]d
  project_id = isolation_project.scale.id
  name       = format("env-%%03d", count.index)
  labels     = { tier = "t${count.index %% %[2]d}" }
}

resource "isolation_policy" "p" {
  count        = %[2]d
  project_id   = isolation_project.scale.id
  name         = "tier-${count.index}"
  policy_types = ["ingress"]
  environment_selector = {
    match_labels = { tier = "t${count.index}" }
  }
  ingress = [{
    from  = [{ cidr = "192.168.${count.index}.0/24" }]
    ports = [{ protocol = "tcp", port = 8000 + count.index }]
  }]
}

output "project_id" {
  value = isolation_project.scale.id
}
`, environments, policies)

// parallelism is Terraform's -parallelism: twice its default, as an
// operator with a few hundred resources would set it.
const parallelism = "-parallelism=20"

// applyTimeout bounds each Terraform command.
const applyTimeout = 10 * time.Minute

// workspace is a Terraform working directory with scaleHCL, using the
// provider built from this tree, pointed at the front end.
type workspace struct {
	tf       *devrun.Terraform
	out      *lockedBuilder
	replicas []*replicatest.Replica
}

// terraformCLI is the CLI the acceptance tests use; without TF_ACC the
// test skips, saying why, before it starts anything.
func terraformCLI(t *testing.T) string {
	t.Helper()
	if os.Getenv("TF_ACC") == "" {
		t.Skip("set TF_ACC=1 to run Terraform through the replicas (make test does)")
	}
	tfPath, err := devrun.FindTerraform(os.Getenv("TF_ACC_TERRAFORM_PATH"))
	if err != nil {
		t.Fatal(err)
	}
	return tfPath
}

func newWorkspace(t *testing.T, tfPath string, c *replicatest.Cluster) *workspace {
	t.Helper()
	dir := t.TempDir()
	cliConfig, err := devrun.WriteCLIConfig(dir, replicatest.Binaries(t))
	if err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(dir, "work")
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "main.tf"), []byte(scaleHCL), 0o644); err != nil {
		t.Fatal(err)
	}
	out := &lockedBuilder{}
	w := &workspace{out: out, replicas: c.Replicas, tf: &devrun.Terraform{Path: tfPath, Dir: work, Env: devrun.EnvAt(cliConfig, c.Front.URL(), c.Token), Stdout: out, Stderr: out}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("terraform's output:\n%s", w.out.String())
		}
	})
	return w
}

// run runs one terraform command, and logs where its time went: its wall
// time, terraform's CPU (with the provider's) and the replicas'.
func (w *workspace) run(t *testing.T, args ...string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), applyTimeout)
	defer cancel()
	before := w.replicaCPU()
	start := time.Now()
	err := w.tf.Run(ctx, append(args, "-input=false", "-no-color")...)
	wall := time.Since(start)
	after := w.replicaCPU()
	var cpu []string
	for i := range after {
		if after[i] < 0 {
			cpu = append(cpu, "(killed)")
			continue
		}
		cpu = append(cpu, (after[i] - before[i]).Round(10*time.Millisecond).String())
	}
	t.Logf("terraform %s: %s wall; CPU: terraform and provider %s, replicas %s", args[0],
		wall.Round(10*time.Millisecond), w.tf.LastCPU.Round(10*time.Millisecond), strings.Join(cpu, " and "))
	return err
}

// replicaCPU is the CPU time each replica has used so far, -1 for one
// that is gone.
func (w *workspace) replicaCPU() []time.Duration {
	out := make([]time.Duration, len(w.replicas))
	for i, r := range w.replicas {
		var err error
		if out[i], err = r.CPUTime(); err != nil {
			out[i] = -1
		}
	}
	return out
}

// logCreations logs how long Terraform took to create each resource type:
// the count, median and longest of its "Creation complete after" lines.
func (w *workspace) logCreations(t *testing.T) {
	t.Helper()
	took := map[string][]time.Duration{}
	for line := range strings.SplitSeq(w.out.String(), "\n") {
		addr, rest, ok := strings.Cut(line, ": Creation complete after ")
		if !ok {
			continue
		}
		d, err := time.ParseDuration(strings.Fields(rest)[0])
		if err != nil {
			continue
		}
		typ, _, _ := strings.Cut(addr, ".")
		took[typ] = append(took[typ], d)
	}
	for _, typ := range slices.Sorted(maps.Keys(took)) {
		ds := took[typ]
		slices.Sort(ds)
		t.Logf("%d %s created: median %s, longest %s (whole seconds, as Terraform prints them)", len(ds), typ, ds[len(ds)/2], ds[len(ds)-1])
	}
}

func (w *workspace) apply(t *testing.T) error {
	return w.run(t, "apply", "-auto-approve", parallelism)
}

// planEmpty fails the test unless a plan (with refresh) proposes nothing.
func (w *workspace) planEmpty(t *testing.T) {
	t.Helper()
	if err := w.run(t, "plan", "-detailed-exitcode", parallelism); err != nil {
		t.Fatalf("the plan after apply is not empty (exit 2) or failed: %v", err)
	}
}

func (w *workspace) destroy(t *testing.T) {
	t.Helper()
	if err := w.run(t, "destroy", "-auto-approve", parallelism); err != nil {
		t.Fatalf("destroy: %v", err)
	}
}

// stateIDs are the ids Terraform's state holds, by resource type.
func (w *workspace) stateIDs(t *testing.T) map[string][]string {
	t.Helper()
	b, err := w.tf.Output(t.Context(), "show", "-json", "-no-color")
	if err != nil {
		t.Fatalf("terraform show: %v", err)
	}
	var show struct {
		Values struct {
			Outputs    map[string]struct{ Value string }
			RootModule struct {
				Resources []struct {
					Type   string
					Values struct{ ID string }
				}
			} `json:"root_module"`
		}
	}
	if err := json.Unmarshal(b, &show); err != nil {
		t.Fatalf("terraform show -json: %v", err)
	}
	ids := map[string][]string{}
	for _, r := range show.Values.RootModule.Resources {
		ids[r.Type] = append(ids[r.Type], r.Values.ID)
	}
	ids["project_id"] = []string{show.Values.Outputs["project_id"].Value}
	return ids
}

// converged checks the API against the state: exactly the configured
// environments, once each and all ready, and the policies, with every
// object in the API in the state and every one in the state in the API.
func converged(t *testing.T, api *client.Client, state map[string][]string) {
	t.Helper()
	projectID := state["project_id"][0]
	envs, err := api.Environments().List(t.Context(), client.ListOptions{ProjectID: projectID, Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]int{}
	var envIDs []string
	for _, e := range envs {
		names[e.Name]++
		envIDs = append(envIDs, e.ID)
		if e.State != apiv1.StateReady {
			t.Errorf("environment %s (%s) is %s, not ready", e.Name, e.ID, e.State)
		}
	}
	for name, n := range names {
		if n > 1 {
			t.Errorf("environment %s exists %d times", name, n)
		}
	}
	for i := range environments {
		if name := fmt.Sprintf("env-%03d", i); names[name] == 0 {
			t.Errorf("environment %s is missing", name)
		}
	}
	if len(envs) != environments {
		t.Errorf("%d environments in the API, want %d", len(envs), environments)
	}
	sameIDs(t, "environment", envIDs, state["isolation_environment"])

	pols, err := api.Policies().List(t.Context(), client.ListOptions{ProjectID: projectID, Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	var polIDs []string
	for _, p := range pols {
		polIDs = append(polIDs, p.ID)
	}
	if len(pols) != policies {
		t.Errorf("%d policies in the API, want %d", len(pols), policies)
	}
	sameIDs(t, "policy", polIDs, state["isolation_policy"])
}

// sameIDs fails unless the API and the state hold the same ids: none
// orphaned (in the API only) and none lost (in the state only).
func sameIDs(t *testing.T, kind string, api, state []string) {
	t.Helper()
	for _, id := range api {
		if !slices.Contains(state, id) {
			t.Errorf("orphan: %s %s is in the API but not in Terraform's state", kind, id)
		}
	}
	for _, id := range state {
		if !slices.Contains(api, id) {
			t.Errorf("%s %s is in Terraform's state but not in the API", kind, id)
		}
	}
}

// nothingLeft fails unless the project is gone with all it held; the
// database is the test's own, so nothing at all is left.
func nothingLeft(t *testing.T, api *client.Client, projectID string) {
	t.Helper()
	envs, err := api.Environments().List(t.Context(), client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pols, err := api.Policies().List(t.Context(), client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(envs) != 0 || len(pols) != 0 {
		t.Fatalf("after destroy: %d environments and %d policies; want none", len(envs), len(pols))
	}
	if _, err := api.Projects().Get(t.Context(), projectID); !client.IsNotFound(err) {
		t.Fatalf("after destroy: project %s: %v, want not found", projectID, err)
	}
}

func TestTerraform_200EnvironmentsThroughTwoReplicasConvergePlanEmptyAndDestroyLeavesNothing(t *testing.T) {
	tfPath := terraformCLI(t)
	c := startCluster(t, 2)
	w := newWorkspace(t, tfPath, c)
	if err := w.apply(t); err != nil {
		t.Fatalf("apply: %v", err)
	}
	w.logCreations(t)
	state := w.stateIDs(t)
	api := c.Replicas[0].Client()
	converged(t, api, state)
	w.planEmpty(t)
	for i, b := range c.Front.Backends() {
		if b.Forwarded == 0 {
			t.Errorf("the front end gave replica %d no connection: each should have served some (%+v)", i, c.Front.Backends())
		}
	}
	w.destroy(t)
	nothingLeft(t, api, state["project_id"][0])
	auditChainIntact(t, c, c.Replicas[len(c.Replicas)-1])
}

// killAt is how many environments the API shows when a replica is killed.
const killAt = 50

func TestTerraform_ApplyConvergesWithAReplicaKilledMidApplyNoDuplicateNoOrphan(t *testing.T) {
	tfPath := terraformCLI(t)
	c := startCluster(t, 2)
	w := newWorkspace(t, tfPath, c)
	// The leader dies: the API it served and the reconciling both fail over.
	victim := c.Leader(t)
	survivor := c.Replicas[(victim.Index+1)%len(c.Replicas)]
	api := survivor.Client()

	applied := make(chan error, 1)
	go func() { applied <- w.apply(t) }()
	if !waitEnvironments(t, api, killAt, applied) {
		t.Fatal("the apply ended before the replica could be killed mid-apply")
	}
	victim.Kill()
	t.Logf("killed replica %d (the leader) with %d+ environments in the API", victim.Index, killAt)
	if err := <-applied; err != nil {
		t.Fatalf("apply with a replica killed: %v", err)
	}
	if b := c.Front.Backends()[victim.Index]; !b.Down {
		t.Errorf("the front end never found replica %d down: %+v", victim.Index, b)
	}
	if got := c.Leader(t); got != survivor {
		t.Fatalf("replica %d leads, want the survivor %d", got.Index, survivor.Index)
	}
	w.logCreations(t)
	state := w.stateIDs(t)
	converged(t, api, state)
	w.planEmpty(t)
	auditChainIntact(t, c, survivor)
	w.destroy(t)
	nothingLeft(t, api, state["project_id"][0])
}

// waitEnvironments polls until the API shows at least n environments,
// false when the apply ends first; the apply's own timeout bounds it.
func waitEnvironments(t *testing.T, api *client.Client, n int, applied chan error) bool {
	t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(applyTimeout)
	for {
		envs, err := api.Environments().List(t.Context(), client.ListOptions{Limit: 500})
		if err != nil {
			t.Fatal(err)
		}
		if len(envs) >= n {
			return true
		}
		select {
		case err := <-applied:
			applied <- err
			return false
		case <-deadline:
			t.Fatalf("fewer than %d environments after %s", n, applyTimeout)
		case <-tick.C:
		}
	}
}

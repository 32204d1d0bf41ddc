// Command isolation-demo runs the product end to end on this machine, as
// `make demo` does: it starts isolationd on its embedded store in a
// temporary directory, builds the workloads' image from Debian's busybox
// and imports it over the API, points the real Terraform CLI at the
// locally built provider through dev_overrides in a generated CLI
// configuration (the user's own configuration is untouched), applies
// examples/quickstart, shows the outputs, the effective policy and the
// workloads, makes a change behind Terraform's back and shows Terraform
// detecting and reverting it, then destroys everything and stops the
// server. It exits non-zero on any failure.
//
// Run as root, on a kernel that allows network namespaces, isolationd uses
// the netns driver under a prefix of the demo's own and the runc runtime:
// the quickstart's workloads run (an httpd in api, an echo service on
// PostgreSQL's port in db), and the demo sends real TCP connections between
// the environments' namespaces, each of which must be answered or dropped
// as the policy of the moment says. It shows a process past its memory
// limit killed and reported, and the workloads' output. As a developer it
// execs into api with the isolationd CLI (the connections then come from
// inside the container), and shows a viewer refused, a session token
// revoked and the sessions' audit events. It gives isolationd an internet
// of its own to reach, a namespace named after its prefix that
// isolationd's uplink joins to the router (--uplink netns:NAME), with a
// resolver (--dns-upstream) and HTTPS servers for a few names; from inside
// api's container it resolves the names the quickstart's fqdn rules allow
// through isolationd's DNS proxy and fetches from them, shows the names in
// the effective policy and check by host name, and shows a name no rule
// allows refused with its Extended DNS Error and an address no rule allows
// refused at once, then the flow records of what api was refused.
// Afterwards it runs `isolationd cleanup` for its prefix
// and deletes its internet. Otherwise it uses the simulate driver, which
// records the workloads and runs none, and says what it skipped.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/devrun"
)

func main() {
	binDir := flag.String("bin", "bin", "directory holding the isolationd and terraform-provider-isolation binaries (make build)")
	tfPath := flag.String("terraform", "", "Terraform or OpenTofu CLI (default: terraform on PATH, else tofu)")
	example := flag.String("example", filepath.Join("examples", "quickstart"), "the configuration to apply")
	keep := flag.Bool("keep", false, "keep the temporary directory (state, server log) for inspection")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d := &demo{binDir: *binDir, tfPath: *tfPath, example: *example, keep: *keep, out: os.Stdout}
	if err := d.run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo failed: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stdout, "\ndemo complete: everything was created, checked, drifted, repaired and destroyed.")
}

type demo struct {
	binDir, tfPath, example string
	keep                    bool
	out                     io.Writer

	step    int
	dir     string
	dataDir string
	server  *devrun.Server
	api     *client.Client
	tf      *devrun.Terraform

	// netnsPrefix is the netns driver's prefix, "" with the simulate driver.
	netnsPrefix string
	// packets, with the netns driver, sends connections between api and db.
	packets *packets
	// namespaces are the environments' namespaces, gone after destroy.
	namespaces []string
	// inet, with the netns driver, is the internet isolationd's uplink
	// leads to.
	inet *internet
}

// section prints a numbered header, so the output reads as the steps of the demo.
func (d *demo) section(title string) {
	d.step++
	fmt.Fprintf(d.out, "\n==> %d. %s\n\n", d.step, title)
}

func (d *demo) run(ctx context.Context) (err error) {
	d.dir, err = os.MkdirTemp("", "isolation-demo-")
	if err != nil {
		return err
	}
	defer func() {
		if d.keep {
			fmt.Fprintf(d.out, "\nkept %s\n", d.dir)
			return
		}
		if rmErr := os.RemoveAll(d.dir); rmErr != nil && err == nil {
			err = rmErr
		}
	}()

	var why string
	if d.netnsPrefix, why, err = chooseDriver(); err != nil {
		return err
	}
	if d.netnsPrefix != "" {
		// Runs once isolationd has stopped, however the demo ended, and
		// even when the demo was interrupted.
		// Its failure is reported beside the demo's own, if any: it
		// says what is left on the machine.
		defer func() {
			err = errors.Join(err, d.cleanup(context.WithoutCancel(ctx)))
		}()
	}

	if err := d.start(ctx, why); err != nil {
		d.showServerLog()
		// A server that started is stopped before the cleanup, which
		// needs the sockets and namespaces it holds.
		if d.server != nil {
			err = errors.Join(err, d.server.Stop(30*time.Second))
		}
		return err
	}
	defer func() {
		d.section("Stopping isolationd")
		stopErr := d.server.Stop(30 * time.Second)
		if stopErr == nil {
			fmt.Fprintln(d.out, "isolationd drained and exited cleanly on SIGTERM")
		}
		if err == nil {
			err = stopErr
		}
		if err != nil {
			d.showServerLog()
		}
	}()

	for _, step := range []func(context.Context) error{d.importImage, d.apply, d.show, d.workloads, d.developerAccess, d.egressByName, d.flows, d.drift, d.destroy} {
		if err := step(ctx); err != nil {
			return err
		}
	}
	if d.netnsPrefix == "" {
		d.section("What the simulate driver skipped")
		fmt.Fprintf(d.out, "%s, so isolationd ran the simulate driver: nothing was isolated and no workload ran.\n"+
			"Skipped: the workloads themselves (api's httpd, db's echo service), real TCP connections between the\n"+
			"environments' namespaces, the process killed past its memory limit, the workloads' output, exec into\n"+
			"the workloads as a developer (the simulate runtime has none to exec into), egress to the demo's fake\n"+
			"internet by name (its namespace, DNS through isolationd's proxy, the fqdn rules' resolved names, a\n"+
			"name and an address no rule allows refused), and isolationd cleanup. Run `make demo` as root to see them.\n", why)
	}
	return nil
}

// start resolves the binaries, starts isolationd and prepares Terraform.
// why says why the netns driver is not used, when it is not.
func (d *demo) start(ctx context.Context, why string) error {
	d.section("Starting isolationd on its embedded store")
	if d.netnsPrefix != "" {
		fmt.Fprintf(d.out, "driver:    netns, prefix %s, runtime runc (running as root): real workloads, real packets between the environments' namespaces\n", d.netnsPrefix)
		var err error
		if d.inet, err = startInternet(d.netnsPrefix, d.dir); err != nil {
			return err
		}
		fmt.Fprintf(d.out, "internet:  %s,\n           the far end of isolationd's uplink; the environments' DNS proxy forwards to its resolver\n", d.inet.describe())
	} else {
		fmt.Fprintf(d.out, "driver:    simulate, %s: no workload runs and no real packets, only what the driver would do (run as root for the netns driver)\n", why)
	}
	tfPath, err := devrun.FindTerraform(d.tfPath)
	if err != nil {
		return err
	}
	if d.binDir, err = filepath.Abs(d.binDir); err != nil {
		return err
	}
	logFile, err := os.Create(filepath.Join(d.dir, "isolationd.log"))
	if err != nil {
		return err
	}
	d.dataDir = filepath.Join(d.dir, "data")
	if err := os.Mkdir(d.dataDir, 0o700); err != nil {
		return err
	}
	// isolationd finds isolation-init, the containers' PID 1, beside its
	// own executable: make build puts both in the bin directory.
	d.server, err = devrun.StartServer(ctx, filepath.Join(d.binDir, devrun.ServerBinary), d.dataDir, logFile, 30*time.Second, d.driverFlags()...)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "isolationd is ready at %s (data in %s)\n", d.server.URL, d.dataDir)
	d.api, err = client.New(client.Config{Endpoint: d.server.URL, Token: d.server.Token, UserAgent: "isolation-demo"})
	if err != nil {
		return err
	}

	cliConfig, err := devrun.WriteCLIConfig(d.dir, d.binDir)
	if err != nil {
		return err
	}
	work := filepath.Join(d.dir, "quickstart")
	if err := devrun.CopyConfig(d.example, work); err != nil {
		return fmt.Errorf("copying %s: %w", d.example, err)
	}
	// The quickstart's workloads run the image the demo imports.
	env := append(devrun.Env(cliConfig, d.server), "TF_VAR_image="+imageName)
	d.tf = &devrun.Terraform{Path: tfPath, Dir: work, Env: env, Stdout: d.out, Stderr: d.out}
	fmt.Fprintf(d.out, "terraform: %s\nprovider:  %s (dev_overrides in %s; your own CLI configuration is not read)\nworkdir:   %s\n",
		tfPath, filepath.Join(d.binDir, devrun.ProviderBinary), cliConfig, work)
	return nil
}

func (d *demo) apply(ctx context.Context) error {
	d.section("terraform apply: a project, two environments with workloads, and their policies")
	// With dev_overrides there is nothing to install, so no `terraform init`.
	return d.tf.Run(ctx, "apply", "-auto-approve", "-no-color")
}

// quickstartOutputs is what the demo reads back from `terraform output -json`.
type quickstartOutputs struct {
	ProjectID    string
	PolicyID     string
	Environments map[string]struct {
		ID      string `json:"id"`
		State   string `json:"state"`
		Address string `json:"address"`
	}
}

func (d *demo) outputs(ctx context.Context) (quickstartOutputs, error) {
	var raw map[string]struct {
		Value json.RawMessage `json:"value"`
	}
	var out quickstartOutputs
	b, err := d.tf.Output(ctx, "output", "-json")
	if err != nil {
		return out, err
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return out, fmt.Errorf("reading terraform output: %w", err)
	}
	for name, dst := range map[string]any{"project_id": &out.ProjectID, "policy_id": &out.PolicyID, "environments": &out.Environments} {
		v, ok := raw[name]
		if !ok {
			return out, fmt.Errorf("the configuration has no output %q", name)
		}
		if err := json.Unmarshal(v.Value, dst); err != nil {
			return out, fmt.Errorf("output %s: %w", name, err)
		}
	}
	return out, nil
}

func (d *demo) show(ctx context.Context) error {
	d.section("terraform output")
	if err := d.tf.Run(ctx, "output", "-no-color"); err != nil {
		return err
	}
	outs, err := d.outputs(ctx)
	if err != nil {
		return err
	}

	d.section("The database's effective policy, from the API")
	db, api := outs.Environments["db"], outs.Environments["api"]
	ep, err := d.api.Environments().EffectivePolicy(ctx, db.ID)
	if err != nil {
		return err
	}
	printEffectivePolicy(d.out, ep)

	d.section("Asking the enforcement driver what it would do")
	for _, c := range []struct {
		req  apiv1.CheckRequest
		want bool
	}{
		{apiv1.CheckRequest{Direction: apiv1.Ingress, Protocol: apiv1.ProtocolTCP, Address: api.Address, Port: 5432}, true},
		{apiv1.CheckRequest{Direction: apiv1.Ingress, Protocol: apiv1.ProtocolTCP, Address: api.Address, Port: 22}, false},
		{apiv1.CheckRequest{Direction: apiv1.Egress, Protocol: apiv1.ProtocolTCP, Address: api.Address, Port: 5432}, true},
		// Only api reaches the internet, and only by name.
		{apiv1.CheckRequest{Direction: apiv1.Egress, Protocol: apiv1.ProtocolTCP, Address: "198.51.100.7", Port: 443}, false},
	} {
		if _, err := d.check(ctx, "db", db.ID, c.req, c.want); err != nil {
			return err
		}
	}
	return nil
}

// check asks the API whether the named environment's rules allow req,
// prints the answer and fails when it is not want.
func (d *demo) check(ctx context.Context, name, id string, req apiv1.CheckRequest, want bool) (*apiv1.CheckResult, error) {
	res, err := d.api.Environments().Check(ctx, id, req)
	if err != nil {
		return res, err
	}
	verdict := "denied"
	if res.Allowed {
		verdict = fmt.Sprintf("allowed by policy %s, rule %d", res.Matched.PolicyName, res.Matched.RuleIndex)
	}
	if len(res.Addresses) > 0 {
		verdict += fmt.Sprintf(" (%s stands for %s now)", req.Address, strings.Join(res.Addresses, ", "))
	}
	fmt.Fprintf(d.out, "%-3s %-7s %s %-15s port %-5d -> %s\n", name, req.Direction, req.Protocol, req.Address, req.Port, verdict)
	for _, w := range res.Warnings {
		fmt.Fprintf(d.out, "    warning: %s\n", w)
	}
	if res.Allowed != want {
		return res, fmt.Errorf("check %s %+v: allowed=%v, want %v", name, req, res.Allowed, want)
	}
	return res, nil
}

// workloads shows what api and db run; with the netns driver, real
// packets between them, their output, and a process past its memory
// limit.
func (d *demo) workloads(ctx context.Context) error {
	outs, err := d.outputs(ctx)
	if err != nil {
		return err
	}
	if err := d.showWorkloads(ctx, outs); err != nil {
		return err
	}
	if d.netnsPrefix == "" {
		return nil
	}

	d.section("Real packets between the workloads")
	if err := d.setUpPackets(ctx, outs); err != nil {
		return err
	}
	if err := d.sendPackets(ctx, outs.ProjectID); err != nil {
		return err
	}

	d.section("The workloads' output")
	if err := d.showLogs(ctx, "db", outs.Environments["db"].ID, "a client connected", 1); err != nil {
		return err
	}
	if err := d.showLogs(ctx, "api", outs.Environments["api"].ID, "response:200", 1); err != nil {
		return err
	}
	return d.memoryLimit(ctx, outs.ProjectID)
}

func printEffectivePolicy(w io.Writer, ep *apiv1.EffectivePolicy) {
	fmt.Fprintf(w, "environment %s (address %s), enforcement generation %d\n", ep.EnvironmentID, ep.Address, ep.Generation)
	for _, p := range ep.Policies {
		fmt.Fprintf(w, "  selected by policy %s (%s)\n", p.Name, p.ID)
	}
	for _, dir := range []struct {
		name  string
		rules []apiv1.EffectiveRule
	}{{"ingress", ep.Ingress}, {"egress", ep.Egress}} {
		fmt.Fprintf(w, "  %s allows (everything else denied):\n", dir.name)
		if len(dir.rules) == 0 {
			fmt.Fprintln(w, "    nothing")
		}
		for _, r := range dir.rules {
			fmt.Fprintf(w, "    %s rule %d: peers %s; ports %s\n", r.PolicyName, r.RuleIndex, describePeers(r.Peers), describePorts(r.Ports))
		}
	}
}

func describePeers(peers []apiv1.EffectivePeer) string {
	if len(peers) == 0 {
		return "any"
	}
	var parts []string
	for _, p := range peers {
		switch {
		case p.FQDN != "":
			parts = append(parts, describeName(p))
		case p.CIDR != "" && len(p.Except) > 0:
			parts = append(parts, fmt.Sprintf("%s except %s", p.CIDR, strings.Join(p.Except, ",")))
		case p.CIDR != "":
			parts = append(parts, p.CIDR)
		default:
			var envs []string
			for _, e := range p.Environments {
				envs = append(envs, fmt.Sprintf("%s@%s", e.Name, e.Address))
			}
			labels := p.EnvironmentSelector.MatchLabels
			var sel []string
			for _, k := range slices.Sorted(maps.Keys(labels)) {
				sel = append(sel, k+"="+labels[k])
			}
			parts = append(parts, fmt.Sprintf("{%s} = [%s]", strings.Join(sel, ","), strings.Join(envs, " ")))
		}
	}
	return strings.Join(parts, "; ")
}

// describeName is an fqdn peer with the names the environment resolved
// and may reach now.
func describeName(p apiv1.EffectivePeer) string {
	if len(p.Names) == 0 {
		return p.FQDN + " (nothing resolved now)"
	}
	var names []string
	for _, n := range p.Names {
		names = append(names, fmt.Sprintf("%s = %s for %s", n.Name, strings.Join(n.Addresses, ","), time.Until(n.Expires).Round(time.Second)))
	}
	return fmt.Sprintf("%s [%s]", p.FQDN, strings.Join(names, "; "))
}

func describePorts(ports []apiv1.Port) string {
	if len(ports) == 0 {
		return "any"
	}
	var parts []string
	for _, p := range ports {
		s := p.Protocol
		switch {
		case p.Port != nil && p.EndPort != nil:
			s += fmt.Sprintf("/%d-%d", *p.Port, *p.EndPort)
		case p.Port != nil:
			s += fmt.Sprintf("/%d", *p.Port)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// drift changes the database's labels and deletes the policy through the
// API, behind Terraform's back, then shows Terraform finding both and
// putting them back.
func (d *demo) drift(ctx context.Context) error {
	outs, err := d.outputs(ctx)
	if err != nil {
		return err
	}
	db := outs.Environments["db"]

	d.section("Drift: someone relabels the database and deletes the policy through the API")
	env, err := d.api.Environments().Get(ctx, db.ID)
	if err != nil {
		return err
	}
	labels := maps.Clone(env.Labels)
	labels["app"] = "db-hijacked"
	labels["owner"] = "someone-else"
	if _, err := d.api.Environments().Update(ctx, db.ID, apiv1.EnvironmentPatch{Labels: &labels}, env.ETag); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "PATCH environment %s labels -> %v\n", db.ID, labels)
	if err := d.api.Policies().Delete(ctx, outs.PolicyID, ""); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "DELETE policy %s\n", outs.PolicyID)
	if err := d.probe(ctx, outs.ProjectID, dbPort, false, "no policy lets api and db reach each other any more"); err != nil {
		return err
	}

	d.section("terraform plan -refresh-only: Terraform sees what changed")
	if code := devrun.ExitCode(d.tf.Run(ctx, "plan", "-refresh-only", "-detailed-exitcode", "-no-color")); code != 2 {
		return fmt.Errorf("terraform plan -refresh-only exited %d, want 2 (changes detected)", code)
	}

	d.section("terraform plan: what applying would do about it")
	if code := devrun.ExitCode(d.tf.Run(ctx, "plan", "-detailed-exitcode", "-no-color")); code != 2 {
		return fmt.Errorf("terraform plan exited %d, want 2 (changes to make)", code)
	}

	d.section("terraform apply: put everything back")
	if err := d.tf.Run(ctx, "apply", "-auto-approve", "-no-color"); err != nil {
		return err
	}
	env, err = d.api.Environments().Get(ctx, db.ID)
	if err != nil {
		return err
	}
	if env.Labels["app"] != "db" || env.Labels["owner"] != "" {
		return fmt.Errorf("after apply the database's labels are %v, want them restored", env.Labels)
	}
	fmt.Fprintf(d.out, "\nthe database's labels are back to %v\n", env.Labels)
	if err := d.probe(ctx, outs.ProjectID, dbPort, true, "terraform apply put the policy back"); err != nil {
		return err
	}

	d.section("terraform plan: nothing left to do")
	if code := devrun.ExitCode(d.tf.Run(ctx, "plan", "-detailed-exitcode", "-no-color")); code != 0 {
		return fmt.Errorf("terraform plan after repair exited %d, want 0 (no changes)", code)
	}
	return nil
}

func (d *demo) destroy(ctx context.Context) error {
	d.section("terraform destroy")
	if err := d.tf.Run(ctx, "destroy", "-auto-approve", "-no-color"); err != nil {
		return err
	}
	projects, err := d.api.Projects().List(ctx, client.ListOptions{})
	if err != nil {
		return err
	}
	envs, err := d.api.Environments().List(ctx, client.ListOptions{})
	if err != nil {
		return err
	}
	if len(projects)+len(envs) > 0 {
		return fmt.Errorf("after destroy the server still has %d projects and %d environments", len(projects), len(envs))
	}
	fmt.Fprintln(d.out, "\nthe server has no projects and no environments left")
	if err := d.checkNothingLeft(); err != nil {
		return err
	}
	return d.removeImage(ctx)
}

// showServerLog prints the end of isolationd's log after a failure.
func (d *demo) showServerLog() {
	b, err := os.ReadFile(filepath.Join(d.dir, "isolationd.log"))
	if err != nil || len(b) == 0 {
		return
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	fmt.Fprintln(os.Stderr, "\nlast lines of isolationd's log:")
	for _, l := range lines[max(0, len(lines)-30):] {
		fmt.Fprintln(os.Stderr, "  "+l)
	}
}

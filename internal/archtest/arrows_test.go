package archtest

import (
	"bufio"
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// serverPackages are the control plane's packages, relative to the module,
// each with what lies below it: the provider and the client reach them only
// over HTTP.
var serverPackages = []string{
	"internal/api",
	"internal/audit",
	"internal/auth",
	"internal/control",
	"internal/enforce",
	"internal/ipam",
	"internal/policy",
	"internal/problem",
	"internal/reconcile",
	"internal/server",
	"internal/siem",
	"internal/store",
}

// pkg is one of the module's packages as `go list` reports it, its path and
// its imports within the module, relative to it ("." for the module root).
type pkg struct {
	path        string
	imports     []string // of its non-test files
	testImports []string // of its test files, both packages
}

// modulePackages lists the module's packages, by path and in go list's order.
// Imports from outside the module are left out: none leads back into it.
func modulePackages(t *testing.T) (map[string]pkg, []string) {
	t.Helper()
	out, err := exec.Command("go", "list", "-m").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	module := strings.TrimSpace(string(out))
	rel := func(p string) (string, bool) {
		if p == module {
			return ".", true
		}
		r, ok := strings.CutPrefix(p, module+"/")
		return r, ok
	}
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}}\t{{join .Imports \" \"}}\t{{join .TestImports \" \"}} {{join .XTestImports \" \"}}", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	pkgs := map[string]pkg{}
	var order []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		fields := strings.Split(sc.Text(), "\t")
		if len(fields) != 3 {
			t.Fatalf("go list printed %q", sc.Text())
		}
		path, _ := rel(fields[0])
		p := pkg{path: path}
		for _, imp := range strings.Fields(fields[1]) {
			if r, ok := rel(imp); ok {
				p.imports = append(p.imports, r)
			}
		}
		for _, imp := range strings.Fields(fields[2]) {
			if r, ok := rel(imp); ok && r != path && !slices.Contains(p.testImports, r) {
				p.testImports = append(p.testImports, r)
			}
		}
		pkgs[path] = p
		order = append(order, path)
	}
	if len(order) == 0 {
		t.Fatal("go list listed no package")
	}
	return pkgs, order
}

// within reports whether path is root or lies below it.
func within(path, root string) bool {
	return path == root || strings.HasPrefix(path, root+"/")
}

func isServerPackage(path string) bool {
	return slices.ContainsFunc(serverPackages, func(root string) bool { return within(path, root) })
}

// chainTo returns the shortest chain of non-test imports from from to a
// package for which bad is true, or nil when there is none.
func chainTo(pkgs map[string]pkg, from string, bad func(string) bool) []string {
	prev := map[string]string{from: ""} // how the search reached each package
	queue := []string{from}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if p != from && bad(p) {
			var chain []string
			for q := p; q != ""; q = prev[q] {
				chain = append(chain, q)
			}
			slices.Reverse(chain)
			return chain
		}
		for _, imp := range pkgs[p].imports {
			if _, seen := prev[imp]; !seen {
				prev[imp] = p
				queue = append(queue, imp)
			}
		}
	}
	return nil
}

// The provider reaches the server only through the client, and the client
// only over HTTP: neither imports a server package, directly or through
// another package. (Their tests may start the server in-process.)
func TestArrows_ProviderAndClientReachNoServerPackage(t *testing.T) {
	pkgs, order := modulePackages(t)
	checked := 0
	for _, path := range order {
		if !within(path, "internal/provider") && !within(path, "internal/client") {
			continue
		}
		checked++
		if chain := chainTo(pkgs, path, isServerPackage); chain != nil {
			t.Errorf("%s reaches the server package %s: %s", path, chain[len(chain)-1], strings.Join(chain, " -> "))
		}
	}
	if checked == 0 {
		t.Fatal("found neither internal/provider nor internal/client")
	}
}

// The reconciler is the loop and its queue: internal/server assembles it,
// and everything else reaches its transitions through internal/control.
// Only the reconciler's own tests import it besides.
func TestArrows_OnlyServerImportsReconcile(t *testing.T) {
	pkgs, order := modulePackages(t)
	for _, path := range order {
		if path == "internal/server" || path == "internal/reconcile" {
			continue
		}
		p := pkgs[path]
		if slices.Contains(p.imports, "internal/reconcile") {
			t.Errorf("%s imports internal/reconcile; only internal/server may", path)
		}
		if slices.Contains(p.testImports, "internal/reconcile") {
			t.Errorf("%s's tests import internal/reconcile; only internal/server may", path)
		}
	}
}

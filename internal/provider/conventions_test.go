package provider

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// The package's test files, parsed once for the convention tests.
func parseTestFiles(t *testing.T) map[string]*ast.File {
	t.Helper()
	names, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	files := map[string]*ast.File{}
	for _, name := range names {
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = f
	}
	return files
}

// TestConventions_AcceptanceTestsAndOnlyThoseAreNamedTestAcc: a test that
// drives the Terraform CLI or needs the shared acceptance server is named
// TestAcc..., and no other test is, so the name says what a test needs.
func TestConventions_AcceptanceTestsAndOnlyThoseAreNamedTestAcc(t *testing.T) {
	t.Parallel()
	for name, f := range parseTestFiles(t) {
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || !strings.HasPrefix(fn.Name.Name, "Test") || fn.Name.Name == "TestMain" {
				continue
			}
			needsAcc := false
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.SelectorExpr:
					if x, ok := n.X.(*ast.Ident); ok && x.Name == "resource" && (n.Sel.Name == "Test" || n.Sel.Name == "ParallelTest") {
						needsAcc = true
					}
				case *ast.Ident:
					if n.Name == "requireAcc" {
						needsAcc = true
					}
				}
				return true
			})
			if named := strings.HasPrefix(fn.Name.Name, "TestAcc"); named != needsAcc {
				t.Errorf("%s: %s needs TF_ACC: %v, but is named TestAcc...: %v", name, fn.Name.Name, needsAcc, named)
			}
		}
	}
}

// TestConventions_SharedTestHelpersLiveInTestHelpers: a top-level
// declaration of one test file that another test file uses belongs in
// testhelpers_test.go, where the next reader looks for it.
func TestConventions_SharedTestHelpersLiveInTestHelpers(t *testing.T) {
	t.Parallel()
	files := parseTestFiles(t)
	declaredIn := map[string]string{}
	for name, f := range files {
		for _, d := range f.Decls {
			for _, id := range topLevelNames(d) {
				declaredIn[id] = name
			}
		}
	}
	for name, f := range files {
		// The names a file leaves unresolved are the package-level ones
		// of other files (and the universe's, which no file declares).
		reported := map[string]bool{}
		for _, id := range f.Unresolved {
			home, ok := declaredIn[id.Name]
			if ok && home != name && home != "testhelpers_test.go" && !reported[id.Name] {
				reported[id.Name] = true
				t.Errorf("%s uses %s, declared in %s: move it to testhelpers_test.go", name, id.Name, home)
			}
		}
	}
}

func topLevelNames(d ast.Decl) []string {
	var names []string
	switch d := d.(type) {
	case *ast.FuncDecl:
		if d.Recv == nil {
			names = append(names, d.Name.Name)
		}
	case *ast.GenDecl:
		for _, s := range d.Specs {
			switch s := s.(type) {
			case *ast.TypeSpec:
				names = append(names, s.Name.Name)
			case *ast.ValueSpec:
				for _, n := range s.Names {
					names = append(names, n.Name)
				}
			}
		}
	}
	return names
}

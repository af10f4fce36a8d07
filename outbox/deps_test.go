package outbox_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The engine and the broker adapters are public libraries: another module
// can import them only if nothing they build with lies under an internal/
// directory of this repository (Go forbids importing those from outside).
func TestLibraryImportsNothingInternal(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("the go command is needed to list the packages' dependencies: %v", err)
	}
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "./outbox/...", "./broker/...")
	cmd.Dir = ".."
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "github.com/heraldhq/herald/") && strings.Contains(pkg+"/", "/internal/") {
			t.Errorf("a library package depends on %s", pkg)
		}
	}
}

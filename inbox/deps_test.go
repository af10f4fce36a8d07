package inbox_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The inbox is a public library that knows no broker: another module can
// import it only if nothing it builds with lies under an internal/
// directory, and a consumer of one broker must not pull in the others.
func TestImportsNoInternalNorBroker(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("the go command is needed to list the packages' dependencies: %v", err)
	}
	cmd := exec.CommandContext(t.Context(), "go", "list", "-deps", "-f", "{{.ImportPath}}", "./...")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if !strings.HasPrefix(pkg, "github.com/heraldhq/herald/") {
			continue
		}
		if strings.Contains(pkg+"/", "/internal/") || strings.Contains(pkg, "/broker") {
			t.Errorf("an inbox package depends on %s", pkg)
		}
	}
}

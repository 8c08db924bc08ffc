package jepsenlite

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoServerImports keeps the harness honest: it may reach the store only as
// a user's client does, so it imports none of the server's packages.
func TestNoServerImports(t *testing.T) {
	for _, pkg := range []string{".", "../cmd/jepsen-lite"} {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			if !strings.HasPrefix(dep, "github.com/raftkv/raftkv/") || strings.HasPrefix(dep, "github.com/raftkv/raftkv/jepsen-lite") ||
				dep == "github.com/raftkv/raftkv/cmd/jepsen-lite" {
				continue
			}
			t.Errorf("%s imports server package %s", pkg, dep)
		}
	}
}

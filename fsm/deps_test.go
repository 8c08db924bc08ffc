package fsm

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the package's imports to the standard library and bbolt: no Raft, no HTTP.
func TestDependencies(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not found")
	}
	out, err := exec.Command(goTool, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		switch {
		case dep == "github.com/raftkv/raftkv/fsm":
		case dep == "go.etcd.io/bbolt", strings.HasPrefix(dep, "go.etcd.io/bbolt/"):
		case strings.HasPrefix(dep, "golang.org/x/sys/"): // bbolt's own dependency
		default:
			t.Errorf("forbidden dependency %s: fsm may import only the standard library and bbolt", dep)
		}
	}
	std, err := exec.Command(goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(std)) {
		if dep == "net/http" {
			t.Errorf("forbidden dependency net/http")
		}
	}
}

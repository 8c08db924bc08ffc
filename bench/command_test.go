package bench

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

func TestCommandPutJSON(t *testing.T) {
	_, addr := newFakeServer(t)
	cmd := NewCommand(nil)
	var stdout, stderr bytes.Buffer
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	cmd.SetArgs([]string{"put", "--nodes", addr, "--clients", "1,2", "--total", "20", "--keys", "10", "--baselines=false", "-o", "json", "-q"})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("Execute: %v\nstderr: %s", err, stderr.String())
	}
	var rep Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("decode report: %v\n%s", err, stdout.String())
	}
	if got := len(rep.Runs); got != 2 {
		t.Fatalf("runs = %d, want 2", got)
	}
	if got := rep.Runs[1].Ops[0].Count; got != 20 {
		t.Errorf("c=2 writes = %d, want 20", got)
	}
}

func TestCommandRejectsBadOutput(t *testing.T) {
	cmd := NewCommand(nil)
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	cmd.SetArgs([]string{"get", "-o", "xml"})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "xml") {
		t.Errorf("Execute(-o xml) = %v, want an error naming xml", err)
	}
}

// TestImports keeps bench a client: it speaks HTTP only and imports no server package.
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, bad := range []string{"github.com/raftkv/raftkv/fsm", "github.com/raftkv/raftkv/cluster", "github.com/raftkv/raftkv/httpapi", "github.com/hashicorp/raft"} {
			if dep == bad || strings.HasPrefix(dep, bad+"/") {
				t.Errorf("bench depends on %s", dep)
			}
		}
	}
}

package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigFilePrecedenceAndTypes(t *testing.T) {
	cmd := newServerCmd()
	fs := cmd.Flags()
	if err := fs.Parse([]string{"--data-dir", "/from-flag"}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RAFTKV_HTTP_ADDR", "127.0.0.1:9999")
	if err := applyEnv(fs); err != nil {
		t.Fatal(err)
	}
	path := writeFile(t, "raftkv.toml", `
data-dir = "/from-file"
http-addr = "127.0.0.1:1111"
raft_addr = "127.0.0.1:2222"     # underscores work too
join = ["a:1", "b:2"]
heartbeat-timeout = "350ms"
snapshot-threshold = 77
bootstrap = true
dial-override = { "x:1" = "y:2" }
`)
	if err := applyConfigFile(fs, path); err != nil {
		t.Fatalf("applyConfigFile: %v", err)
	}
	get := func(name string) string { return fs.Lookup(name).Value.String() }
	for name, want := range map[string]string{
		"data-dir":           "/from-flag",     // the command line wins
		"http-addr":          "127.0.0.1:9999", // then the environment
		"raft-addr":          "127.0.0.1:2222", // then the file
		"join":               "[a:1,b:2]",
		"heartbeat-timeout":  "350ms",
		"snapshot-threshold": "77",
		"bootstrap":          "true",
		"dial-override":      "[x:1=y:2]",
		"election-timeout":   (200 * time.Millisecond).String(), // untouched default
	} {
		if got := get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
}

func TestConfigFileErrorsNameTheSetting(t *testing.T) {
	cases := []struct{ name, content, want string }{
		{"unknown", `data-dri = "/x"`, `unknown setting "data-dri"`},
		{"number for duration", `heartbeat-timeout = 200`, `"heartbeat-timeout": got the number 200, want a duration string`},
		{"bad duration", `heartbeat-timeout = "fast"`, `"heartbeat-timeout"`},
		{"list for scalar", `data-dir = ["a"]`, `"data-dir": got a list`},
		{"bool for int", `snapshot-threshold = true`, `"snapshot-threshold": got a boolean`},
		{"syntax", "id = \"n1\"\ndata-dir = ", "line 2"},
		{"config itself", `config = "other.toml"`, `unknown setting "config"`},
		{"non-string list", `join = [1, 2]`, `list element 0`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, "bad.toml", tc.content)
			err := applyConfigFile(newServerCmd().Flags(), path)
			var ue usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want a usage error naming %s and containing %q", err, path, tc.want)
			}
		})
	}
	if err := applyConfigFile(newServerCmd().Flags(), filepath.Join(t.TempDir(), "missing.toml")); err == nil {
		t.Fatal("a missing config file was accepted")
	}
}

// The example shipped in docs/ stays valid.
func TestConfigFileExampleParses(t *testing.T) {
	fs := newServerCmd().Flags()
	if err := applyConfigFile(fs, "../../docs/raftkv.example.toml"); err != nil {
		t.Fatalf("docs/raftkv.example.toml: %v", err)
	}
	if got := fs.Lookup("log-format").Value.String(); got != "json" {
		t.Fatalf("log-format = %q, want json", got)
	}
}

// A real server process configured by nothing but a config file.
func TestServerRunsFromConfigFile(t *testing.T) {
	bin := raftkvBinary(t)
	ports := freePorts(t, 2)
	dir := t.TempDir()
	path := writeFile(t, "raftkv.toml", `
id = "solo"
data-dir = "`+filepath.Join(dir, "data")+`"
http-addr = "`+ports[0]+`"
raft-addr = "`+ports[1]+`"
bootstrap = true
log-format = "json"
`)
	cmd := exec.Command(bin, "server", "--config", path)
	cmd.Env = cleanEnv()
	logPath := filepath.Join(dir, "server.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	c := client.New(ports[0], 5*time.Second)
	waitFor(t, 20*time.Second, "the configured node accepts a write", func() error {
		_, _, err := c.Put(context.Background(), "from-config", []byte("yes"), client.PutOptions{})
		return err
	})
	st, err := c.Status(context.Background())
	if err != nil || st.ID != "solo" {
		t.Fatalf("status: %+v, %v; want the ID from the file", st, err)
	}
	log, _ := os.ReadFile(logPath)
	if !strings.Contains(string(log), `"msg":"raftkv node started"`) {
		t.Fatalf("log-format = json from the file not applied; log:\n%s", log)
	}

	bad := writeFile(t, "bad.toml", `data-dri = "/x"`)
	res := runCLI(t, "server", "--config", bad)
	if res.code != exitUsage || !strings.Contains(res.stderr, `unknown setting "data-dri"`) {
		t.Fatalf("bad config: exit %d, stderr %q; want exit 2 naming the setting", res.code, res.stderr)
	}
}

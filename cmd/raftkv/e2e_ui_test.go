package main

// The built-in web page (/ui/) in a real headless Chromium against a real
// 3-node cluster of processes: the page must show every node, the real
// leader, and after the leader is killed the new leader, the dead node as
// unhealthy and one more leadership change.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// chromiumPath finds headless Chromium. Without it the test skips, unless
// CI_REQUIRE_CHROMIUM=1 (set by .ci/run), where a missing browser fails.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "chromium is not installed (apt-get install -y chromium); .ci/run installs it"
	if os.Getenv("CI_REQUIRE_CHROMIUM") == "1" {
		t.Fatal(msg + ", and CI_REQUIRE_CHROMIUM=1 requires it")
	}
	t.Skip(msg)
	return ""
}

// uiDOM is what the test reads from the page's rendered DOM: only the
// stable data attributes the page sets for this purpose.
type uiDOM struct {
	status  string              // data-status of #app: loading, live, unreachable
	nodes   []map[string]string // attributes of each <tr data-node-id>
	history int                 // data-count of #history
	newest  string              // data-leader-id of the newest history entry
	newTerm uint64              // data-term of the newest history entry
	banner  string              // text of the unreachable banner, "" when hidden
	raw     string
}

var (
	reTag    = regexp.MustCompile(`<(main|tr|ol|li)\b([^>]*)>`)
	reAttr   = regexp.MustCompile(`([a-zA-Z][\w-]*)(?:="([^"]*)")?`)
	reBanner = regexp.MustCompile(`(?s)<div id="banner"([^>]*)>(.*?)</div>`)
)

func parseUIDOM(dom string) uiDOM {
	d := uiDOM{raw: dom, history: -1, newest: "-"}
	for _, m := range reTag.FindAllStringSubmatch(dom, -1) {
		attrs := map[string]string{}
		for _, a := range reAttr.FindAllStringSubmatch(m[2], -1) {
			attrs[a[1]] = html.UnescapeString(a[2])
		}
		switch {
		case m[1] == "main" && attrs["id"] == "app":
			d.status = attrs["data-status"]
		case m[1] == "tr" && attrs["data-node-id"] != "":
			d.nodes = append(d.nodes, attrs)
		case m[1] == "ol" && attrs["id"] == "history":
			d.history, _ = strconv.Atoi(attrs["data-count"])
		case m[1] == "li" && attrs["data-term"] != "" && d.newest == "-":
			d.newest = attrs["data-leader-id"] // the list is newest first
			d.newTerm, _ = strconv.ParseUint(attrs["data-term"], 10, 64)
		}
	}
	if m := reBanner.FindStringSubmatch(dom); m != nil && !strings.Contains(m[1], "hidden") {
		d.banner = html.UnescapeString(m[2])
	}
	return d
}

// leaders returns the IDs of the rows marked leader.
func (d uiDOM) leaders() []string {
	var out []string
	for _, n := range d.nodes {
		if n["data-leader"] == "true" {
			out = append(out, n["data-node-id"])
		}
	}
	return out
}

func (d uiDOM) node(id string) map[string]string {
	for _, n := range d.nodes {
		if n["data-node-id"] == id {
			return n
		}
	}
	return nil
}

func (d uiDOM) String() string {
	var rows []string
	for _, n := range d.nodes {
		rows = append(rows, fmt.Sprintf("%s(leader=%s health=%s)", n["data-node-id"], n["data-leader"], n["data-health"]))
	}
	return fmt.Sprintf("status=%q nodes=[%s] history=%d newest=%q(term %d) banner=%q",
		d.status, strings.Join(rows, " "), d.history, d.newest, d.newTerm, d.banner)
}

// dumpDOM loads url in headless Chromium, lets the page run for a few
// seconds of virtual time (several polls), and returns the DOM.
func dumpDOM(chrome, profile, url string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chrome,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--disable-extensions", "--mute-audio", "--user-data-dir="+profile,
		"--virtual-time-budget=3000", "--dump-dom", url)
	// Chromium forks helpers: run it in its own process group and kill the
	// whole group if it hangs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tail := stderr.String()
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		return "", fmt.Errorf("chromium --dump-dom %s: %w\n%s", url, err, tail)
	}
	return string(out), nil
}

// waitPage reloads url in Chromium until cond accepts the rendered DOM.
func waitPage(t *testing.T, chrome, url string, timeout time.Duration, what string, cond func(uiDOM) error) uiDOM {
	t.Helper()
	profile := t.TempDir()
	var last uiDOM
	waitFor(t, timeout, what, func() error {
		dom, err := dumpDOM(chrome, profile, url)
		if err != nil {
			return err
		}
		last = parseUIDOM(dom)
		if err := cond(last); err != nil {
			return fmt.Errorf("%w; page: %s", err, last)
		}
		return nil
	})
	return last
}

func TestEndToEndUI(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: starts raftkv processes and Chromium; skipped with -short")
	}
	chrome := chromiumPath(t)
	c := startCluster(t, 3)
	ids := []string{"n1", "n2", "n3"}
	pageOf := func(n *e2eNode) string { return "http://" + n.httpAddr + "/ui/" }
	// apiLeader asks via's API for the leader, on every attempt: on a
	// loaded machine leadership may move while Chromium renders.
	apiLeader := func(via *e2eNode) (string, bool, error) {
		s, err := nodeStatus(via)
		if err != nil {
			return "", false, fmt.Errorf("ask %s for the leader: %w", via.id, err)
		}
		if s.LeaderID == "" {
			return "", false, fmt.Errorf("%s knows no leader", via.id)
		}
		return s.LeaderID, s.State == "Leader", nil
	}

	// 1. Every node appears, all healthy, and exactly the real leader is
	// marked, on a page served by a follower (so the page must find the
	// leader elsewhere).
	via := c.nodes[1]
	before := waitPage(t, chrome, pageOf(via), 120*time.Second, "the page to show the cluster and its leader", func(d uiDOM) error {
		lid, viaLeads, err := apiLeader(via)
		if err != nil {
			return err
		}
		if viaLeads {
			return fmt.Errorf("%s serving the page leads; waiting for it to follow", via.id)
		}
		var got []string
		for _, n := range d.nodes {
			got = append(got, n["data-node-id"])
		}
		slices.Sort(got)
		switch {
		case d.status != "live":
			return fmt.Errorf("page status %q", d.status)
		case !slices.Equal(got, ids):
			return fmt.Errorf("node rows %v, want %v", got, ids)
		case !slices.Equal(d.leaders(), []string{lid}):
			return fmt.Errorf("rows marked leader %v, the API says %q", d.leaders(), lid)
		case d.history < 1 || d.newTerm == 0:
			return errors.New("no leadership change listed")
		}
		for _, n := range d.nodes {
			if n["data-health"] != "healthy" {
				return fmt.Errorf("%s is %s", n["data-node-id"], n["data-health"])
			}
		}
		return nil
	})
	t.Logf("before the kill, via %s: %s", via.id, before)

	// 2. Kill the leader: the page, served by a survivor, shows a new
	// leader, the dead node unhealthy, and a leadership change newer than
	// the dead leader's term.
	leader := c.leader(t, c.nodes, 20*time.Second)
	ls, err := nodeStatus(leader)
	if err != nil {
		t.Fatalf("status of leader %s: %v", leader.id, err)
	}
	if via == leader {
		via = c.others(leader)[0]
	}
	leader.kill(t)
	c.leader(t, c.others(leader), 20*time.Second)
	after := waitPage(t, chrome, pageOf(via), 120*time.Second, "the page to show the new leader and the dead node", func(d uiDOM) error {
		lid, _, err := apiLeader(via)
		if err != nil {
			return err
		}
		dead, nl := d.node(leader.id), d.node(lid)
		switch {
		case d.status != "live":
			return fmt.Errorf("page status %q", d.status)
		case lid == leader.id:
			return fmt.Errorf("%s still names killed %s as leader", via.id, lid)
		case !slices.Equal(d.leaders(), []string{lid}):
			return fmt.Errorf("rows marked leader %v, the API says %s", d.leaders(), lid)
		case dead == nil || dead["data-health"] != "unhealthy":
			return fmt.Errorf("killed %s is not shown unhealthy: %v", leader.id, dead)
		case nl == nil || nl["data-health"] != "healthy":
			return fmt.Errorf("leader %s is not shown healthy: %v", lid, nl)
		case d.newest != lid || d.newTerm <= ls.Term:
			return fmt.Errorf("newest history entry names %q in term %d, want %s after term %d", d.newest, d.newTerm, lid, ls.Term)
		}
		return nil
	})
	t.Logf("after killing %s (term %d), via %s: %s", leader.id, ls.Term, via.id, after)

	// 3. When polling fails the page says so. Chromium gets the page from a
	// survivor through a front whose API requests all fail, as if the node
	// died after serving the page.
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ui/" {
			http.Error(w, `{"error":"node gone"}`, http.StatusBadGateway)
			return
		}
		resp, err := http.Get("http://" + via.httpAddr + "/ui/")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for _, h := range []string{"Content-Type", "Content-Security-Policy"} {
			w.Header().Set(h, resp.Header.Get(h))
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	defer front.Close()
	down := waitPage(t, chrome, front.URL+"/ui/", 60*time.Second, "the page to show the node unreachable", func(d uiDOM) error {
		if d.status != "unreachable" || !strings.Contains(d.banner, "unreachable") {
			return fmt.Errorf("page status %q, banner %q", d.status, d.banner)
		}
		return nil
	})
	t.Logf("unreachable: %s", down)
}

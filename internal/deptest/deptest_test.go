package deptest

import (
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

const module = "github.com/raftkv/raftkv"

// Packages the rules name.
const (
	fsmPkg     = module + "/fsm"
	clusterPkg = module + "/cluster"
	httpapiPkg = module + "/httpapi"
	wirePkg    = module + "/httpapi/wire"
	clientPkg  = module + "/client"

	raftPkg       = "github.com/hashicorp/raft"
	raftBoltPkg   = "github.com/hashicorp/raft-boltdb/v2"
	muxPkg        = "github.com/gorilla/mux"
	netHTTPPkg    = "net/http"
	jepsenLibPkg  = module + "/jepsen-lite"
	jepsenMainPkg = module + "/cmd/jepsen-lite"
)

// goList runs `go list -tags hashicorpmetrics args...` at the module root and
// returns its non-empty output lines.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not found")
	}
	cmd := exec.Command(goTool, append([]string{"list", "-tags", "hashicorpmetrics"}, args...)...)
	cmd.Dir = filepath.Join("..", "..")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// graph caches what go list says, so each package is listed once.
type graph struct {
	mu      sync.Mutex
	project []string
	deps    map[string][]string
	std     map[string]bool
	imports map[string][]string
	// importsLoaded: imports holds every project package.
	importsLoaded bool
}

var g = &graph{deps: map[string][]string{}, std: map[string]bool{}, imports: map[string][]string{}}

// projectPackages lists the module's packages (./...).
func (g *graph) projectPackages(t *testing.T) []string {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.project == nil {
		g.project = goList(t, "-f", "{{.ImportPath}}", "./...")
	}
	return g.project
}

// depsOf is the dependency closure of pkg (pkg included, test imports not).
func (g *graph) depsOf(t *testing.T, pkg string) []string {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	if d, ok := g.deps[pkg]; ok {
		return d
	}
	var deps []string
	for _, l := range goList(t, "-deps", "-f", "{{.ImportPath}} {{.Standard}}", pkg) {
		path, std, _ := strings.Cut(l, " ")
		deps = append(deps, path)
		g.std[path] = std == "true"
	}
	g.deps[pkg] = deps
	return deps
}

// isStd reports whether path is a standard library package; only valid for
// packages already seen by depsOf.
func (g *graph) isStd(path string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.std[path]
}

// importsOf is pkg's direct imports (non-test files). The project's
// packages are listed in one go list run, the first time one is asked for.
func (g *graph) importsOf(t *testing.T, pkg string) []string {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	if im, ok := g.imports[pkg]; ok {
		return im
	}
	if isProject(pkg) && !g.importsLoaded {
		g.importsLoaded = true
		for _, l := range goList(t, "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./...") {
			fields := strings.Fields(l)
			g.imports[fields[0]] = fields[1:]
		}
		if im, ok := g.imports[pkg]; ok {
			return im
		}
	}
	im := goList(t, "-f", `{{join .Imports "\n"}}`, pkg)
	g.imports[pkg] = im
	return im
}

// under reports whether path is pkg or one of its subpackages.
func under(path, pkg string) bool {
	return path == pkg || strings.HasPrefix(path, pkg+"/")
}

func isProject(path string) bool { return under(path, module) }

func isJepsen(path string) bool { return under(path, jepsenLibPkg) || under(path, jepsenMainPkg) }

// A violation is one forbidden edge: pkg depends on dep (via, when the edge
// is indirect, names the project package that imports it directly).
type violation struct {
	dep string
	via string
}

// forbidDeps returns a check failing on any package in pkg's dependency
// closure that is one of (or under) forbidden.
func forbidDeps(forbidden ...string) func(t *testing.T, pkg string) []violation {
	return func(t *testing.T, pkg string) []violation {
		var out []violation
		for _, d := range g.depsOf(t, pkg) {
			for _, f := range forbidden {
				if under(d, f) {
					out = append(out, violation{dep: d})
				}
			}
		}
		return out
	}
}

// forbidDirectInProject returns a check failing when pkg, or any project
// package pkg depends on, imports one of forbidden directly. It is for
// packages that third-party dependencies pull in legitimately (net/http comes
// with hashicorp/go-metrics) but that our own layer must not use.
func forbidDirectInProject(forbidden ...string) func(t *testing.T, pkg string) []violation {
	return func(t *testing.T, pkg string) []violation {
		var out []violation
		for _, d := range g.depsOf(t, pkg) {
			if !isProject(d) {
				continue
			}
			for _, im := range g.importsOf(t, d) {
				if slices.Contains(forbidden, im) {
					out = append(out, violation{dep: im, via: d})
				}
			}
		}
		return out
	}
}

// onlyProjectDeps returns a check failing on any project package in pkg's
// closure that allowed does not accept (pkg itself is always allowed).
func onlyProjectDeps(allowed func(path string) bool) func(t *testing.T, pkg string) []violation {
	return func(t *testing.T, pkg string) []violation {
		var out []violation
		for _, d := range g.depsOf(t, pkg) {
			if d != pkg && isProject(d) && !allowed(d) {
				out = append(out, violation{dep: d})
			}
		}
		return out
	}
}

// stdOnly fails on any non-standard package in pkg's closure but pkg itself.
func stdOnly(t *testing.T, pkg string) []violation {
	var out []violation
	for _, d := range g.depsOf(t, pkg) {
		if d != pkg && !g.isStd(d) {
			out = append(out, violation{dep: d})
		}
	}
	return out
}

// directRaftImporters fails when pkg imports Raft directly and is not cluster.
func directRaftImporters(t *testing.T, pkg string) []violation {
	return directRaftImportersIn(pkg, g.importsOf(t, pkg))
}

func directRaftImportersIn(pkg string, imports []string) []violation {
	if pkg == clusterPkg {
		return nil
	}
	var out []violation
	for _, im := range imports {
		if im == raftPkg || im == raftBoltPkg {
			out = append(out, violation{dep: im, via: pkg})
		}
	}
	return out
}

func TestImportRules(t *testing.T) {
	only := func(pkgs ...string) func(t *testing.T) []string {
		return func(*testing.T) []string { return pkgs }
	}
	tests := []struct {
		name string
		// pkgs lists the packages the rule applies to.
		pkgs func(t *testing.T) []string
		// check returns the rule's violations in one package.
		check func(t *testing.T, pkg string) []violation
		// want says what the rule allows, for the failure message.
		want string
	}{
		{
			name:  "fsm knows neither Raft nor HTTP",
			pkgs:  only(fsmPkg),
			check: forbidDeps(raftPkg, netHTTPPkg),
			want:  "no github.com/hashicorp/raft and no net/http anywhere in fsm's dependencies",
		},
		{
			name:  "cluster does not reach up into the HTTP layer",
			pkgs:  only(clusterPkg),
			check: forbidDeps(httpapiPkg, muxPkg),
			want:  "no " + httpapiPkg + " (nor its subpackages) and no " + muxPkg + " in cluster's dependencies",
		},
		{
			name:  "cluster and the project packages under it do not speak HTTP",
			pkgs:  only(clusterPkg),
			check: forbidDirectInProject(netHTTPPkg),
			want:  "no project package in cluster's dependencies imports net/http (hashicorp/go-metrics may)",
		},
		{
			name:  "only cluster imports Raft",
			pkgs:  g.projectPackages,
			check: directRaftImporters,
			want:  "only " + clusterPkg + " imports " + raftPkg + " or " + raftBoltPkg + " directly",
		},
		{
			name:  "httpapi/wire is a standard-library leaf",
			pkgs:  only(wirePkg),
			check: stdOnly,
			want:  "standard library only",
		},
		{
			name: "jepsen-lite imports no raftkv package",
			pkgs: func(t *testing.T) []string {
				var out []string
				for _, p := range g.projectPackages(t) {
					if isJepsen(p) {
						out = append(out, p)
					}
				}
				return out
			},
			check: onlyProjectDeps(isJepsen),
			want:  "no " + module + " package outside jepsen-lite itself",
		},
		{
			name: "client depends on nothing of the server but httpapi/wire",
			pkgs: only(clientPkg),
			check: onlyProjectDeps(func(p string) bool {
				return p == wirePkg
			}),
			want: "from the project, only " + wirePkg,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pkgs := tc.pkgs(t)
			if len(pkgs) == 0 {
				t.Skip("no package to check in this tree")
			}
			for _, pkg := range pkgs {
				for _, v := range tc.check(t, pkg) {
					if v.via != "" && v.via != pkg {
						t.Errorf("%s: got dependency %s (imported by %s), want %s", pkg, v.dep, v.via, tc.want)
					} else {
						t.Errorf("%s: got dependency %s, want %s", pkg, v.dep, tc.want)
					}
				}
			}
		})
	}
}

// TestRulesSeeTheTree guards the test itself: if a package were renamed, the
// rules above would check nothing and pass. Every package they name must exist.
func TestRulesSeeTheTree(t *testing.T) {
	project := g.projectPackages(t)
	for _, pkg := range []string{fsmPkg, clusterPkg, httpapiPkg, wirePkg, clientPkg} {
		if !slices.Contains(project, pkg) {
			t.Errorf("go list ./... lists no %s: got packages %v, want it among them (update the rules)", pkg, project)
		}
	}
	// And the checks must be able to fail: run each on a package that
	// breaks it and expect a violation.
	for _, c := range []struct {
		name  string
		pkg   string
		check func(t *testing.T, pkg string) []violation
	}{
		{"forbidDeps", httpapiPkg, forbidDeps(muxPkg)},
		{"forbidDirectInProject", httpapiPkg, forbidDirectInProject(netHTTPPkg)},
		{"onlyProjectDeps", httpapiPkg, onlyProjectDeps(isJepsen)},
		{"stdOnly", clientPkg, stdOnly},
		{"directRaftImporters", module + "/internal/nonexistent-raft-user", func(t *testing.T, pkg string) []violation {
			return directRaftImportersIn(pkg, []string{raftPkg})
		}},
	} {
		if got := c.check(t, c.pkg); len(got) == 0 {
			t.Errorf("%s on %s: got no violation, want at least one (the check cannot fail)", c.name, c.pkg)
		}
	}
}

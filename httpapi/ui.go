package httpapi

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/mux"

	"github.com/raftkv/raftkv/httpapi/wire"
)

// The built-in web page: one HTML file with inline CSS and JS that polls the
// status endpoints of the node serving it and draws the cluster.
//
//go:embed ui/index.html
var uiHTML []byte

// uiCSP allows exactly the page's own inline <style> and <script> (by
// SHA-256), fetches to the same origin, and nothing else.
var uiCSP = mustUICSP(uiHTML)

// mustUICSP builds the page's Content-Security-Policy; a page without
// exactly one inline <style> and one inline <script> is a build mistake.
func mustUICSP(page []byte) string {
	csp, err := buildUICSP(page)
	if err != nil {
		panic(fmt.Sprintf("httpapi: embedded ui/index.html: %v", err))
	}
	return csp
}

func buildUICSP(page []byte) (string, error) {
	style, err := inlineHash(page, "style")
	if err != nil {
		return "", err
	}
	script, err := inlineHash(page, "script")
	if err != nil {
		return "", err
	}
	return "default-src 'none'; " +
		"script-src '" + script + "'; " +
		"style-src '" + style + "'; " +
		"connect-src 'self'; img-src 'self' data:; " +
		"base-uri 'none'; form-action 'none'; frame-ancestors 'none'", nil
}

// inlineHash returns the CSP source ('sha256-...' without quotes) of the
// only <tag>...</tag> element's content in page.
func inlineHash(page []byte, tag string) (string, error) {
	open, end := []byte("<"+tag+">"), []byte("</"+tag+">")
	if n := bytes.Count(page, open); n != 1 {
		return "", fmt.Errorf("want exactly one inline <%s>, found %d", tag, n)
	}
	i := bytes.Index(page, open) + len(open)
	j := bytes.Index(page[i:], end)
	if j < 0 {
		return "", fmt.Errorf("<%s> is not closed", tag)
	}
	sum := sha256.Sum256(page[i : i+j])
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:]), nil
}

// uiRoutes registers the web page, its redirects and the leader-history
// endpoint it reads.
func (a *API) uiRoutes(r *mux.Router) {
	page := a.methods(map[string]handlerFunc{http.MethodGet: a.uiPage, http.MethodHead: a.uiPage})
	redirect := a.methods(map[string]handlerFunc{http.MethodGet: uiRedirect, http.MethodHead: uiRedirect})
	r.Path("/").Handler(redirect)
	r.Path("/ui").Handler(redirect)
	r.Path("/ui/").Handler(page)
	r.Path("/v1/operator/raft/leader-history").Handler(a.methods(map[string]handlerFunc{http.MethodGet: a.leaderHistory}))
}

func (a *API) uiPage(w http.ResponseWriter, r *http.Request) error {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", uiCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(uiHTML)
	}
	return nil
}

func uiRedirect(w http.ResponseWriter, r *http.Request) error {
	http.Redirect(w, r, "/ui/", http.StatusFound)
	return nil
}

func (a *API) leaderHistory(w http.ResponseWriter, r *http.Request) error {
	hist := a.node.LeaderHistory()
	out := make([]wire.LeaderChange, 0, len(hist))
	for _, c := range hist {
		out = append(out, wire.LeaderChange{
			Time: c.Time.UTC().Format(time.RFC3339Nano), Term: c.Term, LeaderID: c.LeaderID, LeaderAddr: c.LeaderAddr,
		})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

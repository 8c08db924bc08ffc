package httpapi

// Access control with tokens, in Consul's shape: a client presents a secret
// (X-Consul-Token, Authorization: Bearer, or ?token=), the secret names a
// token, and the token's rules grant read, write or deny per key prefix,
// the longest matching prefix winning. The rules come from a TOML file that
// every node loads for itself (they are not replicated through Raft), and
// a reload swaps them atomically.

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"unicode"

	"github.com/gorilla/mux"
	"github.com/pelletier/go-toml/v2"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/httpapi/wire"
)

// headerToken is Consul's token header.
const headerToken = "X-Consul-Token"

// aclPolicy is what a rule grants; a higher value implies the lower ones.
type aclPolicy uint8

const (
	aclDeny aclPolicy = iota
	aclRead
	aclWrite
)

func (p aclPolicy) String() string {
	switch p {
	case aclRead:
		return "read"
	case aclWrite:
		return "write"
	default:
		return "deny"
	}
}

// The TOML shape of an ACL file. Prefix is a pointer so that a missing
// prefix is an error rather than silently "" (every key).
type aclFile struct {
	DefaultPolicy   string         `toml:"default_policy"`
	ManagementToken string         `toml:"management_token"`
	Tokens          []aclFileToken `toml:"token"`
}

type aclFileToken struct {
	Name   string        `toml:"name"`
	Secret string        `toml:"secret"`
	Rules  []aclFileRule `toml:"rule"`
}

type aclFileRule struct {
	Prefix *string `toml:"prefix"`
	Policy string  `toml:"policy"`
}

// ACLRules is a validated ACL file, ready to enforce. It is immutable; a
// reload builds a new one.
type ACLRules struct {
	source        string
	defaultPolicy aclPolicy
	management    string // sent by this node on its own calls to peers
	mgmtHash      [sha256.Size]byte
	tokens        []aclToken
}

type aclToken struct {
	name  string
	hash  [sha256.Size]byte
	rules []aclRule // longest prefix first
}

type aclRule struct {
	prefix string
	policy aclPolicy
}

// LoadACLFile reads and validates an ACL file (see ParseACL).
func LoadACLFile(path string) (*ACLRules, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read acl file: %w", err)
	}
	return ParseACL(path, data)
}

// ParseACL validates an ACL file's contents strictly: unknown settings,
// a missing or empty management token, empty, duplicate or blank-bearing
// secrets, missing or duplicate token names, missing prefixes, duplicate
// prefixes within a token and unknown policies are all errors naming the
// file (name) and the offending setting. A missing default_policy is deny.
func ParseACL(name string, data []byte) (*ACLRules, error) {
	var f aclFile
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, aclDecodeError(name, err)
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("acl file %s: %s", name, fmt.Sprintf(format, args...))
	}
	rs := &ACLRules{source: name}
	switch f.DefaultPolicy {
	case "", "deny":
		rs.defaultPolicy = aclDeny
	case "read":
		rs.defaultPolicy = aclRead
	default:
		return nil, fail("default_policy = %q: want \"deny\" or \"read\"", f.DefaultPolicy)
	}
	if err := checkSecret(f.ManagementToken); err != nil {
		return nil, fail("management_token: %v", err)
	}
	rs.management = f.ManagementToken
	rs.mgmtHash = sha256.Sum256([]byte(f.ManagementToken))
	seenSecret := map[[sha256.Size]byte]string{rs.mgmtHash: "management_token"}
	seenName := map[string]int{}
	for i, ft := range f.Tokens {
		where := fmt.Sprintf("token %d", i+1)
		if ft.Name != "" {
			where = fmt.Sprintf("token %d (%q)", i+1, ft.Name)
		}
		if strings.TrimSpace(ft.Name) == "" {
			return nil, fail("%s: missing name (used in logs and metrics instead of the secret)", where)
		}
		if j, dup := seenName[ft.Name]; dup {
			return nil, fail("%s: name %q is already used by token %d", where, ft.Name, j)
		}
		seenName[ft.Name] = i + 1
		if err := checkSecret(ft.Secret); err != nil {
			return nil, fail("%s: secret: %v", where, err)
		}
		tok := aclToken{name: ft.Name, hash: sha256.Sum256([]byte(ft.Secret))}
		if other, dup := seenSecret[tok.hash]; dup {
			return nil, fail("%s: secret is the same as the secret of %s; every secret must be unique", where, other)
		}
		seenSecret[tok.hash] = where
		seenPrefix := map[string]bool{}
		for j, fr := range ft.Rules {
			rwhere := fmt.Sprintf("%s, rule %d", where, j+1)
			if fr.Prefix == nil {
				return nil, fail("%s: missing prefix (use prefix = \"\" for every key)", rwhere)
			}
			if seenPrefix[*fr.Prefix] {
				return nil, fail("%s: prefix %q appears twice in this token", rwhere, *fr.Prefix)
			}
			seenPrefix[*fr.Prefix] = true
			var p aclPolicy
			switch fr.Policy {
			case "read":
				p = aclRead
			case "write":
				p = aclWrite
			case "deny":
				p = aclDeny
			case "":
				return nil, fail("%s (prefix %q): missing policy: want read, write or deny", rwhere, *fr.Prefix)
			default:
				return nil, fail("%s (prefix %q): policy = %q: want read, write or deny", rwhere, *fr.Prefix, fr.Policy)
			}
			tok.rules = append(tok.rules, aclRule{prefix: *fr.Prefix, policy: p})
		}
		sort.SliceStable(tok.rules, func(a, b int) bool { return len(tok.rules[a].prefix) > len(tok.rules[b].prefix) })
		rs.tokens = append(rs.tokens, tok)
	}
	return rs, nil
}

// aclDecodeError turns a TOML error into one line naming the file, the
// position and, for an unknown setting, its key.
func aclDecodeError(name string, err error) error {
	var sme *toml.StrictMissingError
	if errors.As(err, &sme) && len(sme.Errors) > 0 {
		var keys []string
		for _, e := range sme.Errors {
			row, _ := e.Position()
			keys = append(keys, fmt.Sprintf("%q (line %d)", strings.Join(e.Key(), "."), row))
		}
		return fmt.Errorf("acl file %s: unknown setting %s: want default_policy, management_token and [[token]] tables of name, secret and [[token.rule]] tables of prefix and policy",
			name, strings.Join(keys, ", "))
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, col := de.Position()
		return fmt.Errorf("acl file %s, line %d column %d: %s", name, row, col, de.Error())
	}
	return fmt.Errorf("acl file %s: %w", name, err)
}

func checkSecret(s string) error {
	if s == "" {
		return errors.New("missing or empty")
	}
	if strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return errors.New("contains blanks or control characters, which HTTP headers cannot carry reliably")
	}
	return nil
}

// Source is the file the rules were read from.
func (rs *ACLRules) Source() string { return rs.source }

// DefaultPolicy is "deny" or "read".
func (rs *ACLRules) DefaultPolicy() string { return rs.defaultPolicy.String() }

// TokenNames lists the tokens' names (never their secrets), in file order.
func (rs *ACLRules) TokenNames() []string {
	out := make([]string, len(rs.tokens))
	for i, t := range rs.tokens {
		out[i] = t.name
	}
	return out
}

// ManagementToken is the management secret, which this node sends on its
// own calls to other nodes (read index, joins, stats).
func (rs *ACLRules) ManagementToken() string { return rs.management }

// ACL holds the rules in force. Set swaps them atomically (a reload);
// requests in flight finish under the rules they started with, or the new
// ones, never a mix within one check. Safe for concurrent use.
type ACL struct{ rules atomic.Pointer[ACLRules] }

// NewACL returns an ACL enforcing rs, which must not be nil.
func NewACL(rs *ACLRules) *ACL {
	a := &ACL{}
	a.rules.Store(rs)
	return a
}

// Set replaces the rules in force; rs must not be nil.
func (a *ACL) Set(rs *ACLRules) { a.rules.Store(rs) }

// Rules returns the rules in force.
func (a *ACL) Rules() *ACLRules { return a.rules.Load() }

// ManagementToken is the management secret of the rules in force.
func (a *ACL) ManagementToken() string { return a.rules.Load().management }

// aclIdentity is who a request is, under the rules in force when it was
// resolved. A nil *aclIdentity means ACLs are off: everything is allowed.
type aclIdentity struct {
	name  string // token name, "management" or "anonymous"; never the secret
	mgmt  bool
	rules []aclRule // the token's rules, longest prefix first (none for anonymous)
	def   aclPolicy // the file's default policy
}

// policy is what the identity may do with key: the longest matching rule,
// else the default policy.
func (id *aclIdentity) policy(key string) aclPolicy {
	if id == nil || id.mgmt {
		return aclWrite
	}
	for _, r := range id.rules {
		if strings.HasPrefix(key, r.prefix) {
			return r.policy
		}
	}
	return id.def
}

// anyUnder reports whether some key under prefix gets at least want.
func (id *aclIdentity) anyUnder(prefix string, want aclPolicy) bool {
	if id.policy(prefix) >= want {
		return true
	}
	for _, r := range id.rules {
		if len(r.prefix) > len(prefix) && strings.HasPrefix(r.prefix, prefix) && r.policy >= want {
			return true
		}
	}
	return false
}

// allUnder reports whether every key under prefix, stored now or later,
// gets at least want (Consul's key_prefix write check). When not, it
// returns the prefix of the rule (or the prefix itself) that falls short.
func (id *aclIdentity) allUnder(prefix string, want aclPolicy) (string, bool) {
	if id.policy(prefix) < want {
		return prefix, false
	}
	if id == nil {
		return "", true
	}
	for _, r := range id.rules {
		if len(r.prefix) > len(prefix) && strings.HasPrefix(r.prefix, prefix) && r.policy < want {
			return r.prefix, false
		}
	}
	return "", true
}

// requestToken is the secret the client presented, looked up as Consul
// does: ?token=, then X-Consul-Token, then Authorization: Bearer.
func requestToken(r *http.Request) string {
	if t := r.URL.Query().Get("token"); t != "" {
		return t
	}
	if t := r.Header.Get(headerToken); t != "" {
		return t
	}
	scheme, rest, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if ok && strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(rest)
	}
	return ""
}

// Reasons a request is denied (the label of raftkv_acl_denied_total).
const (
	aclReasonNotFound   = "acl_not_found"
	aclReasonRead       = "read"
	aclReasonWrite      = "write"
	aclReasonManagement = "management"
)

var aclDenyReasons = []string{aclReasonNotFound, aclReasonRead, aclReasonWrite, aclReasonManagement}

// aclIdentify resolves the request's token under the rules in force: nil
// when ACLs are off, the anonymous identity for no token, an error (403
// "ACL not found") for a secret no token has. Secrets are compared as
// SHA-256 digests in constant time, against every token, so neither the
// time taken nor an early exit tells which token (or how much of one)
// matched.
func (a *API) aclIdentify(r *http.Request) (*aclIdentity, error) {
	if a.cfg.ACL == nil {
		return nil, nil
	}
	rs := a.cfg.ACL.Rules()
	secret := requestToken(r)
	if secret == "" {
		return &aclIdentity{name: "anonymous", def: rs.defaultPolicy}, nil
	}
	h := sha256.Sum256([]byte(secret))
	mgmt := subtle.ConstantTimeCompare(h[:], rs.mgmtHash[:])
	found := -1
	for i := range rs.tokens {
		if subtle.ConstantTimeCompare(h[:], rs.tokens[i].hash[:]) == 1 {
			found = i
		}
	}
	switch {
	case mgmt == 1:
		return &aclIdentity{name: "management", mgmt: true}, nil
	case found >= 0:
		t := &rs.tokens[found]
		return &aclIdentity{name: t.name, rules: t.rules, def: rs.defaultPolicy}, nil
	default:
		return nil, a.aclDenied(r, "unknown", aclReasonNotFound, "ACL not found")
	}
}

// aclDenied counts and logs a denial and returns the 403 for the client.
// Logs name the token, never its secret (nor the query, which may hold it).
func (a *API) aclDenied(r *http.Request, who, reason, msg string) error {
	a.metrics.aclDenied.WithLabelValues(reason).Inc()
	a.log.Info("acl: request denied", "token", who, "reason", reason, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
	return &apiError{status: http.StatusForbidden, outcome: wire.OutcomeFailed, msg: msg}
}

func policyWord(write bool) (aclPolicy, string) {
	if write {
		return aclWrite, aclReasonWrite
	}
	return aclRead, aclReasonRead
}

// aclCheck is nil when the request's token may read (write false) or write
// key, else the 403 error to return as is (its message names the key and
// the missing right, never the secret). Always nil with ACLs off.
func (a *API) aclCheck(r *http.Request, key string, write bool) error {
	id, err := a.aclIdentify(r)
	if err != nil || id == nil {
		return err
	}
	want, reason := policyWord(write)
	if id.policy(key) < want {
		return a.aclDenied(r, id.name, reason, fmt.Sprintf("Permission denied: token lacks %s on %q", reason, key))
	}
	return nil
}

// aclCheckPrefix is aclCheck for every key under prefix, those stored now
// and any stored later (Consul's key_prefix semantics): the token's policy
// at prefix must grant the right and no longer rule under it may take the
// right away. Use it for DELETE ?recurse and for tree operations in a
// transaction; it never depends on which keys exist, so nothing stored in
// the meantime can slip past it.
func (a *API) aclCheckPrefix(r *http.Request, prefix string, write bool) error {
	id, err := a.aclIdentify(r)
	if err != nil || id == nil {
		return err
	}
	want, reason := policyWord(write)
	if short, ok := id.allUnder(prefix, want); !ok {
		return a.aclDenied(r, id.name, reason, fmt.Sprintf("Permission denied: token lacks %s on %q", reason, short))
	}
	return nil
}

// aclCheckTxn checks every operation of a transaction before it is
// proposed: reads need read on their key, writes need write, tree
// operations need the right on their whole prefix.
func (a *API) aclCheckTxn(r *http.Request, ops []fsm.TxnOp) error {
	for _, op := range ops {
		check := a.aclCheck
		if op.Verb == fsm.TxnGetTree || op.Verb == fsm.TxnDeleteTree {
			check = a.aclCheckPrefix
		}
		if err := check(r, op.Key, op.Verb.Writes()); err != nil {
			return err
		}
	}
	return nil
}

// aclRead checks a KV GET of key, or with list a ?recurse or ?keys listing
// of the prefix key. A listing the token cannot read any part of is denied;
// one it may read only part of returns a filter that keeps the keys it may
// read (Consul filters listings the same way). A nil filter keeps all.
func (a *API) aclRead(r *http.Request, key string, list bool) (filter func(key string) bool, err error) {
	if !list {
		return nil, a.aclCheck(r, key, false)
	}
	id, err := a.aclIdentify(r)
	if err != nil || id == nil {
		return nil, err
	}
	if _, all := id.allUnder(key, aclRead); all {
		return nil, nil
	}
	if !id.anyUnder(key, aclRead) {
		return nil, a.aclDenied(r, id.name, aclReasonRead, fmt.Sprintf("Permission denied: token lacks read on %q", key))
	}
	return func(k string) bool { return id.policy(k) >= aclRead }, nil
}

// aclFilterEntries keeps the entries filter accepts (all when nil).
func aclFilterEntries(entries []fsm.Entry, filter func(string) bool) []fsm.Entry {
	if filter == nil {
		return entries
	}
	out := entries[:0]
	for _, e := range entries {
		if filter(e.Key) {
			out = append(out, e)
		}
	}
	return out
}

// aclKeys is store.Keys(prefix, separator) over the keys filter accepts:
// the keys are filtered before they are folded at the separator, so a
// folded name shows only when the token may read a key under it.
func aclKeys(store *fsm.Store, prefix, separator string, filter func(string) bool) ([]string, error) {
	if filter == nil {
		return store.KeysLimit(prefix, separator, maxListBytes)
	}
	// Bounded like every listing (the bound applies before filtering).
	all, err := store.KeysLimit(prefix, "", maxListBytes)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, k := range all {
		if !filter(k) {
			continue
		}
		if separator != "" {
			if i := strings.Index(k[len(prefix):], separator); i >= 0 {
				k = k[:len(prefix)+i+len(separator)]
			}
		}
		// Keys sharing a folded name sort next to each other.
		if len(out) > 0 && out[len(out)-1] == k {
			continue
		}
		out = append(out, k)
	}
	return out, nil
}

// aclOpenRoute reports whether a route (by its path template) is open
// without a token: liveness, readiness, status and cluster shape, metrics,
// the UI. KV and transactions check per key in their handlers; every other
// route, including any added later, needs the management token.
func aclOpenRoute(tmpl string) (open, perKey bool) {
	switch {
	case tmpl == "/v1/kv/" || tmpl == "/v1/txn":
		return false, true
	case tmpl == "/v1/health", tmpl == "/v1/ready", tmpl == "/metrics",
		tmpl == "/v1/operator/raft/configuration", tmpl == "/v1/operator/autopilot/health",
		tmpl == "/v1/operator/raft/leader-history",
		strings.HasPrefix(tmpl, "/v1/status/"),
		tmpl == "/", tmpl == "/ui", strings.HasPrefix(tmpl, "/ui/"):
		return true, false
	}
	return false, false
}

// aclGate is the router middleware that enforces the management token on
// every route that is neither open nor checked per key. The route is taken
// from the router's match (its template), not from the raw path, so no
// spelling of a path can reach a handler under another route's rules.
func (a *API) aclGate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.cfg.ACL == nil {
			next.ServeHTTP(w, r)
			return
		}
		tmpl := ""
		if cr := mux.CurrentRoute(r); cr != nil {
			tmpl, _ = cr.GetPathTemplate()
		}
		if open, perKey := aclOpenRoute(tmpl); open || perKey {
			next.ServeHTTP(w, r)
			return
		}
		id, err := a.aclIdentify(r)
		if err == nil && !id.mgmt {
			err = a.aclDenied(r, id.name, aclReasonManagement, "Permission denied: this endpoint needs the management token")
		}
		if err != nil {
			a.setClusterHeaders(w)
			a.writeError(w, r, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// setInternalToken gives a request this node makes to another node on its
// own behalf (read index) the management token, when ACLs are on.
func (a *API) setInternalToken(req *http.Request) {
	if a.cfg.ACL != nil {
		req.Header.Set(headerToken, a.cfg.ACL.ManagementToken())
	}
}

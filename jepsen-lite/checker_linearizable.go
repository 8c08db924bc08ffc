package jepsenlite

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Verdict is a checker's answer.
type Verdict string

const (
	Valid   Verdict = "valid"
	Invalid Verdict = "invalid"
	Unknown Verdict = "unknown"
)

// worse returns the more severe of two verdicts: invalid > unknown > valid.
func worse(a, b Verdict) Verdict {
	rank := map[Verdict]int{Valid: 0, Unknown: 1, Invalid: 2}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

// CheckResult is one checker's answer with what a human needs to debug it.
type CheckResult struct {
	Name    string   `json:"name"`
	Verdict Verdict  `json:"verdict"`
	Summary string   `json:"summary"`
	Details []string `json:"details,omitempty"`
	Files   []string `json:"files,omitempty"`
}

// registerInput and registerOutput are the porcupine model's op shapes.
// A register holds a string; "" is "absent". Values are unique per key, so a
// CAS on the ModifyIndex at which Expect was read is a CAS on Expect itself.
type registerInput struct {
	Kind   string
	Value  string // write / cas new value
	Expect string // cas
}

type registerOutput struct {
	Result  string // read
	Swapped bool   // cas
	Unknown bool   // info: any result
}

// registerModel is a single string register with read, write and
// compare-and-set, partitioned per key by the caller.
var registerModel = porcupine.Model{
	Init: func() interface{} { return "" },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		st, in, out := state.(string), input.(registerInput), output.(registerOutput)
		switch in.Kind {
		case KindRead:
			return out.Unknown || out.Result == st, st
		case KindWrite:
			return true, in.Value
		case KindCAS:
			match := st == in.Expect
			if out.Unknown {
				// An unknown CAS linearised here did whatever the state
				// allows; if it never happened it can be linearised after
				// every completed op, where it is invisible.
				if match {
					return true, in.Value
				}
				return true, st
			}
			if out.Swapped {
				return match, in.Value
			}
			return !match, st
		}
		return false, st
	},
	DescribeOperation: func(input, output interface{}) string {
		in, out := input.(registerInput), output.(registerOutput)
		res := ""
		switch {
		case out.Unknown:
			res = " -> ?"
		case in.Kind == KindRead:
			res = " -> " + show(out.Result)
		case in.Kind == KindCAS:
			res = fmt.Sprintf(" -> %v", out.Swapped)
		}
		switch in.Kind {
		case KindRead:
			return "read()" + res
		case KindWrite:
			return "write(" + show(in.Value) + ")" + res
		default:
			return "cas(" + show(in.Expect) + " → " + show(in.Value) + ")" + res
		}
	},
	DescribeState: func(state interface{}) string { return show(state.(string)) },
}

// toPorcupine converts one key's ops. Failed ops did not happen (except a CAS
// that answered false, which observed the register and is kept); unknown
// writes are open-ended; stale reads are not linearizable by contract.
func toPorcupine(ops []Op, end int64) []porcupine.Operation {
	var out []porcupine.Operation
	for _, o := range ops {
		in := registerInput{Kind: o.Kind, Value: o.Value, Expect: o.Expect}
		var res registerOutput
		ret := o.Complete
		switch {
		case o.Kind == KindStaleRead || o.Kind == KindFinalRead:
			continue
		case o.Outcome == OutcomeOK && o.Kind == KindCAS:
			res.Swapped = o.Swapped
		case o.Outcome == OutcomeOK:
			res.Result = o.Result
		case o.Outcome == OutcomeInfo && o.IsWrite():
			res.Unknown, ret = true, end
		default:
			continue // failed, or a read that did not complete
		}
		out = append(out, porcupine.Operation{ClientId: o.Process, Input: in, Output: res, Call: o.Invoke, Return: ret, Metadata: o.Index})
	}
	return out
}

// byKey groups ops by key, keeping each key's ops in history order.
func byKey(ops []Op) (keys []string, groups map[string][]Op) {
	groups = map[string][]Op{}
	for _, o := range ops {
		if _, ok := groups[o.Key]; !ok {
			keys = append(keys, o.Key)
		}
		groups[o.Key] = append(groups[o.Key], o)
	}
	sort.Strings(keys)
	return keys, groups
}

// LinearizableChecker checks every key's ops against registerModel.
type LinearizableChecker struct {
	// Timeout bounds the search per key; expiry is a failure to prove
	// (verdict unknown), never a pass.
	Timeout time.Duration
	// Dir, when set, receives porcupine's HTML visualisation of each failing key.
	Dir string
	// Nemesis and Leaders annotate failures with what was going on.
	Nemesis []NemesisEvent
	Leaders []LeaderEvent
}

// Check runs the checker.
func (c LinearizableChecker) Check(ops []Op) CheckResult {
	res := CheckResult{Name: "linearizable", Verdict: Valid}
	if c.Timeout == 0 {
		c.Timeout = 30 * time.Second
	}
	var end int64
	for _, o := range ops {
		end = max(end, o.Complete)
	}
	end += int64(time.Second)
	keys, groups := byKey(ops)
	var nOps, nKeys, bad, unknown int
	for _, k := range keys {
		pops := toPorcupine(groups[k], end)
		if len(pops) == 0 {
			continue
		}
		nKeys++
		nOps += len(pops)
		r, info := porcupine.CheckOperationsVerbose(registerModel, pops, c.Timeout)
		switch r {
		case porcupine.Ok:
			continue
		case porcupine.Unknown:
			unknown++
			res.Verdict = worse(res.Verdict, Unknown)
			res.Details = append(res.Details, fmt.Sprintf("key %q: search timed out after %s over %d ops (not proven)", k, c.Timeout, len(pops)))
			continue
		}
		bad++
		res.Verdict = Invalid
		res.Details = append(res.Details, c.explain(k, groups[k], pops, info)...)
		if c.Dir != "" {
			p := filepath.Join(c.Dir, "linearizability-"+sanitize(k)+".html")
			if err := porcupine.VisualizePath(registerModel, info, p); err == nil {
				res.Files = append(res.Files, p)
			}
		}
	}
	res.Summary = fmt.Sprintf("%d keys, %d ops checked: %d not linearizable, %d not proven in time", nKeys, nOps, bad, unknown)
	return res
}

// explain lists, for a failing key, the longest linearisable prefix found and
// the ops that could not be placed after it, with time, node, outcome,
// active faults and leader.
func (c LinearizableChecker) explain(key string, ops []Op, pops []porcupine.Operation, info porcupine.LinearizationInfo) []string {
	byIdx := map[int]Op{}
	for _, o := range ops {
		byIdx[o.Index] = o
	}
	out := []string{fmt.Sprintf("key %q is NOT linearizable (%d ops)", key, len(pops))}
	partials := info.PartialLinearizationsOperations()
	var longest []porcupine.Operation
	for _, part := range partials {
		for _, seq := range part {
			if len(seq) > len(longest) {
				longest = seq
			}
		}
	}
	placed := map[int]bool{}
	state := ""
	for _, p := range longest {
		placed[p.Metadata.(int)] = true
		_, s := registerModel.Step(state, p.Input, p.Output)
		state = s.(string)
	}
	if n := len(longest); n > 0 {
		out = append(out, fmt.Sprintf("  longest linearisable prefix: %d ops, ending in state %s; last ones:", n, show(state)))
		for _, p := range longest[max(0, n-5):] {
			out = append(out, "    "+c.annotate(byIdx[p.Metadata.(int)]))
		}
	}
	// The ops that could not be placed: those not in the prefix whose
	// invocation precedes the earliest completion among the unplaced.
	var rest []porcupine.Operation
	for _, p := range pops {
		if !placed[p.Metadata.(int)] {
			rest = append(rest, p)
		}
	}
	sort.Slice(rest, func(i, j int) bool { return rest[i].Call < rest[j].Call })
	minRet := int64(1<<63 - 1)
	for _, p := range rest {
		minRet = min(minRet, p.Return)
	}
	out = append(out, "  ops that could not be linearised next (state "+show(state)+"):")
	shown := 0
	for _, p := range rest {
		if p.Call > minRet || shown >= 12 {
			break
		}
		out = append(out, "    "+c.annotate(byIdx[p.Metadata.(int)]))
		shown++
	}
	return out
}

func (c LinearizableChecker) annotate(o Op) string {
	s := o.String()
	if f := faultsAt(c.Nemesis, o.Invoke); len(f) > 0 {
		s += " faults=" + strings.Join(f, ",")
	}
	if l := leaderAt(c.Leaders, o.Invoke); l != "" {
		s += " leader=" + l
	}
	return s
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

// StaleReadChecker reports ?stale reads: lagging is expected and only
// counted; a value nobody wrote is a bug.
func StaleReadChecker(ops []Op) CheckResult {
	res := CheckResult{Name: "stale-reads", Verdict: Valid}
	written := map[string]map[string]bool{}
	lastAck := map[string][]Op{} // key -> ok writes, in completion order
	for _, o := range ops {
		if o.IsWrite() && o.Outcome != OutcomeFail {
			if written[o.Key] == nil {
				written[o.Key] = map[string]bool{}
			}
			written[o.Key][o.Value] = true
			if o.Outcome == OutcomeOK && (o.Kind == KindWrite || o.Swapped) {
				lastAck[o.Key] = append(lastAck[o.Key], o)
			}
		}
	}
	for k := range lastAck {
		sort.Slice(lastAck[k], func(i, j int) bool { return lastAck[k][i].Complete < lastAck[k][j].Complete })
	}
	var n, behind, invented int
	for _, o := range ops {
		if o.Kind != KindStaleRead || o.Outcome != OutcomeOK {
			continue
		}
		n++
		if o.Result != "" && !written[o.Key][o.Result] {
			invented++
			res.Verdict = Invalid
			res.Details = append(res.Details, "stale read saw a value nobody wrote: "+o.String())
			continue
		}
		// Behind: some write acknowledged before this read started is
		// not what it saw (an approximation; stale reads are not checked
		// for order).
		acks := lastAck[o.Key]
		i := sort.Search(len(acks), func(i int) bool { return acks[i].Complete >= o.Invoke })
		if i > 0 && acks[i-1].Value != o.Result {
			behind++
		}
	}
	res.Summary = fmt.Sprintf("%d ?stale reads, %d saw an older value than one acknowledged before they began (expected), %d invented", n, behind, invented)
	return res
}

// writeFile is a small helper for checkers that leave artifacts.
func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o644) }

package jepsenlite

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// SetWorkload adds unique elements to a set stored as one key's value (a
// comma-separated list) with read-CAS loops. Once a set holds MaxElems
// elements, workers move on to a fresh key. Every read and CAS is also checked
// for linearizability as a register; after healing, Final reads every set from
// every node and CheckSet compares.
type SetWorkload struct {
	Prefix   string
	MaxElems int
	Retries  int

	mu  sync.Mutex
	cur int
	seq int
}

// NewSetWorkload returns a set workload writing under prefix.
func NewSetWorkload(prefix string) *SetWorkload {
	return &SetWorkload{Prefix: prefix, MaxElems: 150, Retries: 20}
}

func (s *SetWorkload) Name() string { return "set" }

func (s *SetWorkload) key(i int) string { return fmt.Sprintf("%ss%d", s.Prefix, i) }

func (s *SetWorkload) nextElem() (key, elem string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	elem = fmt.Sprintf("e%d", s.seq)
	return s.key(s.cur), elem
}

// full moves workers to the next key once key is full.
func (s *SetWorkload) full(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.key(s.cur) == key {
		s.cur++
	}
}

func (s *SetWorkload) keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ks []string
	for i := 0; i <= s.cur; i++ {
		ks = append(ks, s.key(i))
	}
	return ks
}

func splitSet(v string) []string {
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

func (s *SetWorkload) Run(ctx context.Context, w *worker) {
	for ctx.Err() == nil {
		key, elem := s.nextElem()
		for try := 0; try < s.Retries && ctx.Err() == nil; try++ {
			if w.rng.IntN(10) == 0 {
				w.read(ctx, w.client(), key, true) // a stale read, checked as a prefix
			}
			_, rr := w.read(ctx, w.client(), key, false)
			if rr.Outcome != OutcomeOK {
				sleepCtx(ctx, 20*time.Millisecond)
				continue
			}
			if len(splitSet(rr.Value)) >= s.MaxElems {
				s.full(key)
				break // this element is abandoned (never attempted as a write)
			}
			nv := elem
			if rr.Value != "" {
				nv = rr.Value + "," + elem
			}
			var idx uint64
			if rr.Found {
				idx = rr.Index
			}
			op, _ := w.cas(ctx, w.client(), key, rr.Value, idx, nv)
			if op.Outcome == OutcomeInfo || (op.Outcome == OutcomeOK && op.Swapped) {
				break // acknowledged, or unknown: either way, move on
			}
		}
	}
}

// Final reads every set from every node, default and ?stale.
func (s *SetWorkload) Final(ctx context.Context, clients []*Client, h *History, opTO time.Duration) {
	for _, k := range s.keys() {
		for _, c := range clients {
			for _, stale := range []bool{false, true} {
				for try := 0; try < 10; try++ {
					op := Op{Process: -1, Kind: KindFinalRead, Node: c.Node(), Key: k, Invoke: h.Now()}
					cctx, cancel := context.WithTimeout(ctx, opTO)
					r := c.Get(cctx, k, stale)
					cancel()
					op.Result, op.RaftIndex, op.Complete, op.Outcome, op.Error = r.Value, r.Index, h.Now(), r.Outcome, r.Err
					if stale {
						op.Error = strings.TrimSpace("stale " + op.Error)
					}
					h.AddOp(op)
					if r.Outcome == OutcomeOK || !sleepCtx(ctx, 200*time.Millisecond) {
						break
					}
				}
			}
		}
	}
}

func (s *SetWorkload) Check(ops []Op, lin LinearizableChecker) []CheckResult {
	return []CheckResult{lin.Check(ops), CheckSet(ops)}
}

// CheckSet checks the set workload: for each set key, the final reads (from
// every node) agree; every acknowledged element is present; no element is
// present that was never attempted; no element twice; and every successful
// read during the run, default or ?stale, is a prefix of the final state.
func CheckSet(ops []Op) CheckResult {
	res := CheckResult{Name: "set", Verdict: Valid}
	keys, groups := byKey(ops)
	var nAck, nUnknown, nFinal, nReads, nStale int
	fail := func(f string, a ...any) {
		res.Verdict = Invalid
		if len(res.Details) < 30 {
			res.Details = append(res.Details, fmt.Sprintf(f, a...))
		}
	}
	for _, k := range keys {
		var final *Op
		attempted := map[string]Outcome{}
		for _, o := range groups[k] {
			if o.Kind != KindCAS {
				continue
			}
			el := splitSet(o.Value)
			e := el[len(el)-1]
			switch {
			case o.Outcome == OutcomeOK && o.Swapped:
				attempted[e] = OutcomeOK
			case o.Outcome == OutcomeInfo && attempted[e] != OutcomeOK:
				attempted[e] = OutcomeInfo
			case attempted[e] == "":
				attempted[e] = OutcomeFail
			}
		}
		for _, o := range groups[k] {
			if o.Kind != KindFinalRead || o.Outcome != OutcomeOK {
				continue
			}
			nFinal++
			if final == nil {
				o := o
				final = &o
			} else if o.Result != final.Result {
				fail("key %q: final reads disagree: %s has %d elements, %s has %d", k, final.Node, len(splitSet(final.Result)), o.Node, len(splitSet(o.Result)))
			}
		}
		if final == nil {
			if len(attempted) > 0 {
				res.Verdict = worse(res.Verdict, Unknown)
				res.Details = append(res.Details, fmt.Sprintf("key %q: no successful final read", k))
			}
			continue
		}
		present := map[string]bool{}
		for _, e := range splitSet(final.Result) {
			if present[e] {
				fail("key %q: element %s present twice", k, e)
			}
			present[e] = true
			if attempted[e] == "" || attempted[e] == OutcomeFail {
				fail("key %q: element %s present but never (successfully or unknowingly) added", k, e)
			}
		}
		var lost []string
		for e, oc := range attempted {
			switch oc {
			case OutcomeOK:
				nAck++
				if !present[e] {
					lost = append(lost, e)
				}
			case OutcomeInfo:
				nUnknown++
			}
		}
		if len(lost) > 0 {
			sort.Strings(lost)
			fail("key %q: %d acknowledged elements lost: %v", k, len(lost), lost[:min(len(lost), 20)])
			for _, o := range groups[k] {
				if o.Kind == KindCAS && o.Swapped && o.Outcome == OutcomeOK {
					el := splitSet(o.Value)
					if el[len(el)-1] == lost[0] {
						fail("  acknowledged by: %s", o)
					}
				}
			}
		}
		for _, o := range groups[k] {
			if (o.Kind != KindRead && o.Kind != KindStaleRead) || o.Outcome != OutcomeOK {
				continue
			}
			nReads++
			if o.Kind == KindStaleRead {
				nStale++
			}
			if !strings.HasPrefix(final.Result+",", o.Result+",") && o.Result != "" {
				fail("key %q: read is not a prefix of the final state: %s", k, o)
			}
		}
	}
	res.Summary = fmt.Sprintf("%d sets: %d acknowledged adds, %d unknown, %d final reads, %d reads (%d ?stale) checked as prefixes",
		len(keys), nAck, nUnknown, nFinal, nReads, nStale)
	return res
}

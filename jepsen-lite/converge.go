package jepsenlite

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"
)

// CheckConvergence polls every node's digest until all report the same
// applied index and the same digest, or timeout. Called after the workload
// stopped and the nemesis healed, so the indexes must stop moving.
func CheckConvergence(ctx context.Context, clients []*Client, timeout time.Duration) CheckResult {
	res := CheckResult{Name: "convergence"}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last map[string]Digest
	var lastErr map[string]error
	for {
		last, lastErr = map[string]Digest{}, map[string]error{}
		for _, c := range clients {
			cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
			d, err := c.Digest(cctx)
			ccancel()
			if err != nil {
				lastErr[c.Node()] = err
				continue
			}
			last[c.Node()] = d
		}
		if len(lastErr) == 0 && agree(last) {
			for _, d := range last {
				res.Verdict = Valid
				res.Summary = fmt.Sprintf("%d nodes converged at applied index %d, digest %.12s…, %d keys", len(last), d.AppliedIndex, d.Digest, d.Keys)
				return res
			}
		}
		if !sleepCtx(ctx, 250*time.Millisecond) {
			break
		}
	}
	// Same applied index with different digests is divergence: invalid.
	// Anything else (a node not answering, indexes still apart) is a
	// failure to prove.
	res.Verdict = Unknown
	byIndex := map[uint64]map[string]bool{}
	for _, d := range last {
		if byIndex[d.AppliedIndex] == nil {
			byIndex[d.AppliedIndex] = map[string]bool{}
		}
		byIndex[d.AppliedIndex][d.Digest] = true
	}
	for idx, ds := range byIndex {
		if len(ds) > 1 {
			res.Verdict = Invalid
			res.Details = append(res.Details, fmt.Sprintf("nodes at applied index %d report different digests", idx))
		}
	}
	var nodes []string
	for n := range last {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	for _, n := range nodes {
		d := last[n]
		res.Details = append(res.Details, fmt.Sprintf("%s: applied %d digest %.16s keys %d", n, d.AppliedIndex, d.Digest, d.Keys))
	}
	for n, err := range lastErr {
		res.Details = append(res.Details, fmt.Sprintf("%s: %v", n, err))
	}
	res.Summary = "nodes did not converge within " + timeout.String() + ": " + strings.Join(res.Details, "; ")
	return res
}

func agree(ds map[string]Digest) bool {
	var first *Digest
	for _, d := range ds {
		if first == nil {
			d := d
			first = &d
			continue
		}
		if d.AppliedIndex != first.AppliedIndex || d.Digest != first.Digest {
			return false
		}
	}
	return first != nil
}

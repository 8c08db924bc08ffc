package jepsenlite

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Report gathers everything a run leaves behind: results.json, report.html
// and the text printed on stdout.
type Report struct {
	Config      Config
	Result      Result
	Ops         []Op
	Nemesis     []NemesisEvent
	Leaders     []LeaderEvent
	GitCommit   string
	FaultCounts map[string]int
}

// Counts is ok/fail/info per operation kind. A CAS that answered false is a
// fail here (the operation did not take effect) even though the checker uses
// what it observed.
type Counts map[string]map[Outcome]int

// CountOps tallies ops by kind and outcome.
func CountOps(ops []Op) Counts {
	c := Counts{}
	for _, o := range ops {
		if c[o.Kind] == nil {
			c[o.Kind] = map[Outcome]int{}
		}
		oc := o.Outcome
		if o.Kind == KindCAS && oc == OutcomeOK && !o.Swapped {
			oc = OutcomeFail
		}
		c[o.Kind][oc]++
	}
	return c
}

// Unavailability is the time from a fault's start to the next acknowledged
// write.
type Unavailability struct {
	Fault   string        `json:"fault"`
	Targets []string      `json:"targets,omitempty"`
	At      time.Duration `json:"at_ns"`
	Until   time.Duration `json:"until_next_ack_ns"` // -1: none after it
}

// UnavailabilityWindows computes one window per fault start.
func UnavailabilityWindows(ops []Op, nem []NemesisEvent) []Unavailability {
	var acks []int64
	for _, o := range ops {
		if o.Outcome == OutcomeOK && (o.Kind == KindWrite || (o.Kind == KindCAS && o.Swapped)) {
			acks = append(acks, o.Complete)
		}
	}
	sort.Slice(acks, func(i, j int) bool { return acks[i] < acks[j] })
	var out []Unavailability
	for _, ev := range nem {
		if ev.Phase != "start" {
			continue
		}
		u := Unavailability{Fault: ev.Fault, Targets: ev.Targets, At: time.Duration(ev.Time), Until: -1}
		i := sort.Search(len(acks), func(i int) bool { return acks[i] > ev.Time })
		if i < len(acks) {
			u.Until = time.Duration(acks[i] - ev.Time)
		}
		out = append(out, u)
	}
	return out
}

// results is the shape of results.json.
type results struct {
	Valid          any               `json:"valid"` // true | false | "unknown"
	Verdict        Verdict           `json:"verdict"`
	Seed           uint64            `json:"seed"`
	Replay         string            `json:"replay"`
	GitCommit      string            `json:"git_commit"`
	Flags          map[string]any    `json:"flags"`
	Checks         []CheckResult     `json:"checks"`
	Counts         Counts            `json:"counts"`
	Faults         map[string]int    `json:"faults"`
	Unavailability []Unavailability  `json:"unavailability"`
	Notes          []string          `json:"notes,omitempty"`
	Files          map[string]string `json:"files"`
}

// Write writes results.json and report.html into the run directory.
func (r *Report) Write() error {
	valid := any(r.Result.Verdict == Valid)
	if r.Result.Verdict == Unknown {
		valid = "unknown"
	}
	cfg := r.Config
	res := results{
		Valid: valid, Verdict: r.Result.Verdict, Seed: cfg.Seed, Replay: cfg.Replay, GitCommit: r.GitCommit,
		Flags: map[string]any{
			"nodes": cfg.Nodes, "workload": cfg.Workload, "faults": cfg.Faults, "time_limit": cfg.TimeLimit.String(),
			"concurrency": cfg.Concurrency, "net": cfg.Net, "op_timeout": cfg.OpTimeout.String(),
			"fault_window": cfg.FaultMin.String() + "-" + cfg.FaultMax.String(), "heal": cfg.Heal.String(),
			"combine": cfg.Combine, "endpoints": cfg.Endpoints, "binary": cfg.Binary,
		},
		Checks: r.Result.Checks, Counts: CountOps(r.Ops), Faults: r.FaultCounts,
		Unavailability: UnavailabilityWindows(r.Ops, r.Nemesis), Notes: r.Result.Notes,
		Files: r.files(),
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(r.Result.Dir, "results.json"), b, 0o644); err != nil {
		return err
	}
	return r.writeHTML(filepath.Join(r.Result.Dir, "report.html"))
}

func (r *Report) files() map[string]string {
	d := r.Result.Dir
	f := map[string]string{
		"results": filepath.Join(d, "results.json"), "history": filepath.Join(d, "history.jsonl"),
		"report": filepath.Join(d, "report.html"),
	}
	if _, err := os.Stat(filepath.Join(d, "logs")); err == nil {
		f["logs"] = filepath.Join(d, "logs")
	}
	if _, err := os.Stat(filepath.Join(d, "data")); err == nil {
		f["data"] = filepath.Join(d, "data")
	}
	return f
}

// Print writes the human summary: verdict, checkers, counts, faults,
// unavailability, failure details, then paths.
func (r *Report) Print(w io.Writer) {
	res := r.Result
	fmt.Fprintf(w, "\n== jepsen-lite verdict: %s ==  (seed %d, %d ops)\n", strings.ToUpper(string(res.Verdict)), r.Config.Seed, len(r.Ops))
	for _, c := range res.Checks {
		fmt.Fprintf(w, "  %-13s %-8s %s\n", c.Name, c.Verdict, c.Summary)
	}
	counts := CountOps(r.Ops)
	var kinds []string
	for k := range counts {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	fmt.Fprintf(w, "  %-13s %7s %7s %7s\n", "ops", "ok", "fail", "info")
	for _, k := range kinds {
		fmt.Fprintf(w, "  %-13s %7d %7d %7d\n", k, counts[k][OutcomeOK], counts[k][OutcomeFail], counts[k][OutcomeInfo])
	}
	if len(r.FaultCounts) > 0 {
		var fs []string
		for f, n := range r.FaultCounts {
			fs = append(fs, fmt.Sprintf("%s x%d", f, n))
		}
		sort.Strings(fs)
		fmt.Fprintf(w, "  faults: %s\n", strings.Join(fs, ", "))
	}
	for _, ev := range r.Nemesis {
		if ev.Phase == "skip" {
			fmt.Fprintf(w, "  fault skipped at %s: %s: %s\n", fmtNS(ev.Time), ev.Fault, ev.Detail)
		}
	}
	if u := UnavailabilityWindows(r.Ops, r.Nemesis); len(u) > 0 {
		fmt.Fprintln(w, "  unavailability (fault start -> next acknowledged write):")
		for _, x := range u {
			until := "none after it"
			if x.Until >= 0 {
				until = x.Until.Round(time.Millisecond).String()
			}
			fmt.Fprintf(w, "    %8s %-28s %-22s %s\n", x.At.Round(time.Millisecond), x.Fault, strings.Join(x.Targets, ","), until)
		}
	}
	for _, n := range res.Notes {
		fmt.Fprintf(w, "  NOTE: %s\n", n)
	}
	for _, c := range res.Checks {
		if c.Verdict == Valid || len(c.Details) == 0 {
			continue
		}
		fmt.Fprintf(w, "  -- %s: %s --\n", c.Name, c.Verdict)
		const maxLines = 80
		for i, d := range c.Details {
			if i == maxLines {
				fmt.Fprintf(w, "  ... %d more lines in results.json\n", len(c.Details)-maxLines)
				break
			}
			fmt.Fprintf(w, "  %s\n", d)
		}
		for _, f := range c.Files {
			fmt.Fprintf(w, "  visualisation: %s\n", f)
		}
	}
	if res.Verdict != Valid {
		fmt.Fprintln(w, "  nemesis timeline:")
		for _, ev := range r.Nemesis {
			fmt.Fprintf(w, "    %8s %-5s %-28s %-22s leader=%s %s\n", fmtNS(ev.Time), ev.Phase, ev.Fault, strings.Join(ev.Targets, ","), ev.Leader, ev.Detail)
		}
		fmt.Fprintln(w, "  leader timeline:")
		for _, l := range r.Leaders {
			fmt.Fprintf(w, "    %8s leader=%s term=%d\n", fmtNS(l.Time), l.Leader, l.Term)
		}
	}
	fmt.Fprintf(w, "  replay: %s\n", r.Config.Replay)
	files := r.files()
	var names []string
	for k := range files {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Fprintf(w, "  %-8s %s\n", k+":", files[k])
	}
}

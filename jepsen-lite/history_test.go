package jepsenlite

import (
	"os"
	"path/filepath"
	"testing"
)

func TestHistoryRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "history.jsonl")
	h, err := NewHistory(p)
	if err != nil {
		t.Fatal(err)
	}
	h.AddLeader(LeaderEvent{Leader: "n1", Term: 2})
	h.AddOp(Op{Process: 3, Kind: KindCAS, Node: "n2", Key: "k", Value: "v2", Expect: "v1", ExpectIndex: 7, Swapped: true, Outcome: OutcomeOK, Invoke: 10, Complete: 20})
	h.AddNemesis(NemesisEvent{Phase: "start", Fault: FaultKill, Targets: []string{"n1"}, Leader: "n1"})
	h.AddOp(Op{Process: 4, Kind: KindWrite, Node: "n3", Key: "k", Value: "v3", Outcome: OutcomeInfo, Error: "timeout", Invoke: 30, Complete: 40})
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ops, nem, leaders, err := LoadHistory(f)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(ops), 2; got != want {
		t.Fatalf("ops = %d, want %d", got, want)
	}
	if got, want := ops[0], h.Ops()[0]; got != want {
		t.Errorf("op 0 = %+v, want %+v", got, want)
	}
	if len(nem) != 1 || nem[0].Fault != FaultKill || len(leaders) != 1 || leaders[0].Leader != "n1" {
		t.Errorf("nemesis %+v leaders %+v", nem, leaders)
	}
	if got := faultsAt(nem, nem[0].Time+1); len(got) != 1 {
		t.Errorf("faultsAt after start = %v, want the kill", got)
	}
	if got := leaderAt(leaders, leaders[0].Time+1); got != "n1" {
		t.Errorf("leaderAt = %q, want n1", got)
	}
}

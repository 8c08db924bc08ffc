package jepsenlite

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func loadTestdata(t *testing.T, name string) ([]Op, []NemesisEvent, []LeaderEvent) {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ops, nem, leaders, err := LoadHistory(f)
	if err != nil {
		t.Fatal(err)
	}
	return ops, nem, leaders
}

func TestLinearizableChecker(t *testing.T) {
	for _, tc := range []struct {
		file string
		want Verdict
		// detail must appear in the explanation of an invalid history
		detail string
	}{
		{"register-valid.jsonl", Valid, ""},
		{"register-stale-read.jsonl", Invalid, "read(\"a\") -> v1"},
		{"register-bad-cas.jsonl", Invalid, "cas(\"a\", v1@0 -> v3) -> true"},
		{"register-lost-write.jsonl", Invalid, "-> v1"},
		{"set-valid.jsonl", Valid, ""},
	} {
		t.Run(tc.file, func(t *testing.T) {
			ops, nem, leaders := loadTestdata(t, tc.file)
			dir := t.TempDir()
			got := LinearizableChecker{Timeout: 10 * time.Second, Dir: dir, Nemesis: nem, Leaders: leaders}.Check(ops)
			if got.Verdict != tc.want {
				t.Fatalf("verdict = %s, want %s; %s\n%s", got.Verdict, tc.want, got.Summary, strings.Join(got.Details, "\n"))
			}
			if tc.want != Invalid {
				return
			}
			text := strings.Join(got.Details, "\n")
			if !strings.Contains(text, tc.detail) {
				t.Errorf("details lack %q:\n%s", tc.detail, text)
			}
			if len(got.Files) != 1 {
				t.Errorf("visualisations = %v, want 1", got.Files)
			}
			t.Logf("%s\n%s", got.Summary, text)
		})
	}
}

func TestLinearizableCheckerAnnotatesFaults(t *testing.T) {
	ops, nem, leaders := loadTestdata(t, "register-stale-read.jsonl")
	got := LinearizableChecker{Timeout: 10 * time.Second, Nemesis: nem, Leaders: leaders}.Check(ops)
	text := strings.Join(got.Details, "\n")
	for _, want := range []string{"faults=partition-isolate-leader[n1|n2,n3]", "leader=n1", "on n1"} {
		if !strings.Contains(text, want) {
			t.Errorf("details lack %q:\n%s", want, text)
		}
	}
}

func TestCheckSet(t *testing.T) {
	for _, tc := range []struct {
		file    string
		want    Verdict
		details []string
	}{
		{"set-valid.jsonl", Valid, nil},
		{"set-lost.jsonl", Invalid, []string{"1 acknowledged elements lost: [e2]"}},
		{"set-invented.jsonl", Invalid, []string{"element e7 present but never", "not a prefix"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			ops, _, _ := loadTestdata(t, tc.file)
			got := CheckSet(ops)
			if got.Verdict != tc.want {
				t.Fatalf("verdict = %s, want %s: %s %v", got.Verdict, tc.want, got.Summary, got.Details)
			}
			text := strings.Join(got.Details, "\n")
			for _, d := range tc.details {
				if !strings.Contains(text, d) {
					t.Errorf("details lack %q:\n%s", d, text)
				}
			}
		})
	}
}

func TestStaleReadChecker(t *testing.T) {
	ops, _, _ := loadTestdata(t, "register-valid.jsonl")
	got := StaleReadChecker(ops)
	if got.Verdict != Valid || !strings.Contains(got.Summary, "1 ?stale reads, 1 saw an older value") {
		t.Errorf("got %s %q, want valid with 1 lagging stale read", got.Verdict, got.Summary)
	}
	ops = append(ops, Op{Kind: KindStaleRead, Key: "a", Result: "never-written", Outcome: OutcomeOK, Invoke: 300, Complete: 301})
	if got := StaleReadChecker(ops); got.Verdict != Invalid {
		t.Errorf("invented stale value: verdict = %s, want invalid", got.Verdict)
	}
}

// TestLinearizableCheckerTimeoutIsUnknown: a search that runs out of time
// proves nothing, so the verdict is unknown, never valid.
func TestLinearizableCheckerTimeoutIsUnknown(t *testing.T) {
	var ops []Op
	// Many concurrent unknown writes and reads make the search space huge.
	for i := 0; i < 400; i++ {
		ops = append(ops, Op{Process: i, Kind: KindWrite, Key: "k", Value: "v" + string(rune('A'+i%26)) + strings.Repeat("x", i/26), Outcome: OutcomeInfo, Invoke: int64(i), Complete: int64(i + 1)})
	}
	for i := 0; i < 60; i++ {
		ops = append(ops, Op{Process: 1000 + i, Kind: KindRead, Key: "k", Result: "v" + string(rune('A'+(i*7)%26)) + strings.Repeat("x", (i*7)%15), Outcome: OutcomeOK, Invoke: int64(500 + i), Complete: int64(1000 + i)})
	}
	got := LinearizableChecker{Timeout: 50 * time.Millisecond}.Check(ops)
	if got.Verdict == Valid {
		t.Fatalf("verdict = valid after a %s search; want unknown or invalid: %s", 50*time.Millisecond, got.Summary)
	}
	t.Logf("%s: %s", got.Verdict, got.Summary)
}

func TestWorse(t *testing.T) {
	for _, tc := range []struct{ a, b, want Verdict }{
		{Valid, Valid, Valid}, {Valid, Unknown, Unknown}, {Unknown, Invalid, Invalid}, {Invalid, Valid, Invalid},
	} {
		if got := worse(tc.a, tc.b); got != tc.want {
			t.Errorf("worse(%s, %s) = %s, want %s", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestUnavailabilityWindows(t *testing.T) {
	ops := []Op{
		{Kind: KindWrite, Outcome: OutcomeOK, Complete: 100},
		{Kind: KindWrite, Outcome: OutcomeFail, Complete: 300},
		{Kind: KindCAS, Outcome: OutcomeOK, Swapped: false, Complete: 350},
		{Kind: KindCAS, Outcome: OutcomeOK, Swapped: true, Complete: 400},
	}
	nem := []NemesisEvent{{Time: 200, Phase: "start", Fault: "kill"}, {Time: 250, Phase: "end", Fault: "kill"}, {Time: 500, Phase: "start", Fault: "pause"}}
	got := UnavailabilityWindows(ops, nem)
	if len(got) != 2 || got[0].Until != 200 || got[1].Until != -1 {
		t.Errorf("windows = %+v, want kill 200ns then pause none", got)
	}
}

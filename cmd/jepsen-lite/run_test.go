package main

import (
	"context"
	"testing"
)

func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		want    int
		wantErr bool
	}{
		{"valid history", []string{"check", "../../jepsen-lite/testdata/register-valid.jsonl"}, exitValid, false},
		{"invalid history", []string{"check", "../../jepsen-lite/testdata/register-stale-read.jsonl"}, exitInvalid, false},
		{"invalid set", []string{"check", "--workload", "set", "../../jepsen-lite/testdata/set-lost.jsonl"}, exitInvalid, false},
		{"missing history", []string{"check", "testdata/none.jsonl"}, exitHarness, true},
		{"bad node count", []string{"run", "--nodes", "4", "--binary", "x", "--dir", t.TempDir()}, exitHarness, true},
		{"unknown fault", []string{"run", "--nemesis", "meteor", "--binary", "x", "--dir", t.TempDir()}, exitHarness, true},
		{"faults against endpoints", []string{"run", "--endpoints", "127.0.0.1:1", "--nemesis", "kill", "--dir", t.TempDir()}, exitHarness, true},
		{"unknown flag", []string{"run", "--frobnicate"}, exitHarness, true},
		{"bad net mode", []string{"run", "--net", "carrier-pigeon", "--binary", "x", "--dir", t.TempDir()}, exitHarness, true},
		{"bad old netns value", []string{"run", "--netns", "maybe", "--binary", "x", "--dir", t.TempDir()}, exitHarness, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Run(context.Background(), tc.args)
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Errorf("Run(%q) = %d, %v; want %d, error %v", tc.args, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

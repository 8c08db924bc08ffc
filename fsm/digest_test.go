package fsm

import "testing"

func TestDigestCoversEveryField(t *testing.T) {
	base := []Command{set("a", "1"), set("b", "2"), {Op: OpSetMeta, Key: "m", Value: []byte("x")}}
	tests := []struct {
		name string
		last Command // applied at index 4 in place of a noop
		same bool
	}{
		{"noop", Command{Op: OpNoop}, true},
		{"failed cas", Command{Op: OpCAS, Key: "a", Value: []byte("9")}, true},
		{"same value rewritten (ModifyIndex)", set("a", "1"), false},
		{"flags", Command{Op: OpCAS, Key: "a", Value: []byte("1"), Flags: 1, Index: 1}, false},
		{"new key", set("c", "3"), false},
		{"meta", Command{Op: OpSetMeta, Key: "m", Value: []byte("y")}, false},
		{"delete", Command{Op: OpDelete, Key: "b"}, false},
	}
	ref := openTestStore(t)
	mustApply(t, ref, logsFrom(1, append(base, Command{Op: OpNoop})...)...)
	want := mustDigest(t, ref)
	if want.Keys != 2 || want.AppliedIndex != 4 || len(want.Digest) != 64 {
		t.Fatalf("reference digest %+v: want 2 keys at index 4 and a sha256 hex digest", want)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTestStore(t)
			mustApply(t, s, logsFrom(1, append(base, tt.last)...)...)
			got := mustDigest(t, s)
			if (got.Digest == want.Digest) != tt.same {
				t.Errorf("got digest %s, reference %s: want equal %v", got.Digest, want.Digest, tt.same)
			}
		})
	}
}

package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func txnCmd(ops ...TxnOp) Command { return Command{Op: OpTxn, Value: EncodeTxn(ops)} }

func TestTxnEncodeDecodeRoundTrip(t *testing.T) {
	ops := []TxnOp{
		{Verb: TxnSet, Key: "a", Value: []byte("1"), Flags: 7},
		{Verb: TxnCAS, Key: "b", Value: []byte("2"), Index: 9},
		{Verb: TxnGetTree, Key: ""},
		{Verb: TxnDeleteCAS, Key: "c", Index: 1 << 40},
	}
	got, err := DecodeTxn(EncodeTxn(ops))
	if err != nil {
		t.Fatalf("DecodeTxn: %v", err)
	}
	if len(got) != len(ops) {
		t.Fatalf("decoded %d ops, want %d", len(got), len(ops))
	}
	for i := range ops {
		if got[i].Verb != ops[i].Verb || got[i].Key != ops[i].Key || !bytes.Equal(got[i].Value, ops[i].Value) ||
			got[i].Flags != ops[i].Flags || got[i].Index != ops[i].Index {
			t.Errorf("op %d: got %+v, want %+v", i, got[i], ops[i])
		}
	}
	// Re-encoding gives the same bytes.
	if !bytes.Equal(EncodeTxn(got), EncodeTxn(ops)) {
		t.Error("re-encoding differs")
	}
}

func TestTxnDecodeRejectsBadInput(t *testing.T) {
	good := EncodeTxn([]TxnOp{{Verb: TxnSet, Key: "k", Value: []byte("v")}})
	tooMany := make([]TxnOp, MaxTxnOps+1)
	for i := range tooMany {
		tooMany[i] = TxnOp{Verb: TxnDelete, Key: "k"}
	}
	cases := map[string][]byte{
		"empty":          nil,
		"zero ops":       EncodeTxn(nil),
		"too many ops":   EncodeTxn(tooMany),
		"unknown verb":   EncodeTxn([]TxnOp{{Verb: 99, Key: "k"}}),
		"verb zero":      EncodeTxn([]TxnOp{{Verb: 0, Key: "k"}}),
		"empty key":      EncodeTxn([]TxnOp{{Verb: TxnSet}}),
		"value on get":   EncodeTxn([]TxnOp{{Verb: TxnGet, Key: "k", Value: []byte("x")}}),
		"truncated":      good[:len(good)-1],
		"trailing bytes": append(slices.Clone(good), 0),
		"key too long":   EncodeTxn([]TxnOp{{Verb: TxnSet, Key: strings.Repeat("k", MaxKeySize+1)}}),
	}
	for name, b := range cases {
		if _, err := DecodeTxn(b); !errors.Is(err, ErrBadCommand) {
			t.Errorf("%s: err = %v, want ErrBadCommand", name, err)
		}
		if err := (Command{Op: OpTxn, Value: b}).Validate(); err == nil {
			t.Errorf("%s: Validate accepted it", name)
		}
	}
	if err := (Command{Op: OpTxn, Key: "k", Value: good}).Validate(); err == nil {
		t.Error("a txn command with a key validated")
	}
}

func TestTxnAppliesAllOps(t *testing.T) {
	s := openTestStore(t)
	mustApply(t, s, logsFrom(1,
		Command{Op: OpSet, Key: "cfg/a", Value: []byte("old")},
		Command{Op: OpSet, Key: "cfg/b", Value: []byte("b")},
		Command{Op: OpSet, Key: "gone/1", Value: []byte("x")},
		Command{Op: OpSet, Key: "gone/2", Value: []byte("y")},
	)...)
	res := mustApply(t, s, logsFrom(5, txnCmd(
		TxnOp{Verb: TxnCheckIndex, Key: "cfg/a", Index: 1},
		TxnOp{Verb: TxnCAS, Key: "cfg/a", Value: []byte("new"), Index: 1},
		TxnOp{Verb: TxnCAS, Key: "cfg/c", Value: []byte("c"), Index: 0},
		TxnOp{Verb: TxnCheckNotExists, Key: "cfg/zzz"},
		TxnOp{Verb: TxnDeleteTree, Key: "gone/"},
		TxnOp{Verb: TxnDeleteCAS, Key: "cfg/b", Index: 2},
		TxnOp{Verb: TxnGetTree, Key: "cfg/"},
	))...)[0]
	if res.Err != nil || !res.OK || res.Txn == nil || len(res.Txn.Errors) != 0 {
		t.Fatalf("txn result = %+v (txn %+v), want OK", res, res.Txn)
	}
	var keys []string
	for _, e := range res.Txn.Results {
		keys = append(keys, e.Key)
	}
	// check-index, cas, cas, then get-tree's two keys (cfg/b was deleted before it).
	want := []string{"cfg/a", "cfg/a", "cfg/c", "cfg/a", "cfg/c"}
	if !slices.Equal(keys, want) {
		t.Fatalf("result keys %q, want %q", keys, want)
	}
	if res.Txn.Results[1].Value != nil || string(res.Txn.Results[3].Value) != "new" {
		t.Errorf("values: cas result %q (want none), get-tree %q (want new)", res.Txn.Results[1].Value, res.Txn.Results[3].Value)
	}
	if e := res.Txn.Results[1]; e.ModifyIndex != 5 || e.CreateIndex != 1 {
		t.Errorf("cas result indexes create %d modify %d, want 1 and 5", e.CreateIndex, e.ModifyIndex)
	}
	if got := mustList(t, s, ""); len(got) != 2 || got[0].Key != "cfg/a" || got[1].Key != "cfg/c" {
		t.Fatalf("store after txn: %+v", got)
	}
}

func TestTxnFailureChangesNothing(t *testing.T) {
	s := openTestStore(t)
	mustApply(t, s, logsFrom(1,
		Command{Op: OpSet, Key: "a", Value: []byte("1")},
		Command{Op: OpSet, Key: "t/1", Value: []byte("1")},
		Command{Op: OpSet, Key: "t/2", Value: []byte("2")},
	)...)
	before := mustDigest(t, s)
	res := mustApply(t, s, logsFrom(4, txnCmd(
		TxnOp{Verb: TxnSet, Key: "a", Value: []byte("changed")},
		TxnOp{Verb: TxnSet, Key: "new", Value: []byte("n")},
		TxnOp{Verb: TxnSet, Key: "new", Value: []byte("twice")},
		TxnOp{Verb: TxnDeleteTree, Key: "t/"},
		TxnOp{Verb: TxnGet, Key: "missing"},
		TxnOp{Verb: TxnCAS, Key: "a", Value: []byte("x"), Index: 999},
	))...)[0]
	if res.OK || res.Txn == nil {
		t.Fatalf("txn result = %+v, want failed with a TxnResult", res)
	}
	if len(res.Txn.Results) != 0 {
		t.Errorf("a failed txn returned results %+v", res.Txn.Results)
	}
	var idx []int
	for _, e := range res.Txn.Errors {
		idx = append(idx, e.OpIndex)
	}
	if !slices.Equal(idx, []int{4, 5}) {
		t.Fatalf("errors at ops %v, want [4 5]: %+v", idx, res.Txn.Errors)
	}
	if !strings.Contains(res.Txn.Errors[0].What, `"missing" doesn't exist`) {
		t.Errorf("error text %q", res.Txn.Errors[0].What)
	}
	after := mustDigest(t, s)
	if after.Digest != before.Digest || after.Keys != before.Keys {
		t.Fatalf("state changed by a failed txn: before %+v after %+v", before, after)
	}
	if s.AppliedIndex() != 4 {
		t.Errorf("applied index %d, want 4 (a failed txn still consumes its log index)", s.AppliedIndex())
	}
	// The batch goes on: an entry after the failed txn in the same batch applies.
	mustApply(t, s, logsFrom(5, txnCmd(TxnOp{Verb: TxnGet, Key: "missing"}), Command{Op: OpSet, Key: "z", Value: []byte("z")})...)
	if _, ok, _ := s.Get("z"); !ok {
		t.Error("the entry after a failed txn in the same batch was not applied")
	}
}

// Replicas must agree: applying the same txn log on two stores, in different batch splits, gives the
// same state.
func TestTxnDeterministicAcrossBatches(t *testing.T) {
	r := testRand(t)
	var logs []Log
	for i := range 300 {
		var ops []TxnOp
		for range 1 + r.IntN(6) {
			k := string(rune('a' + r.IntN(5)))
			switch r.IntN(5) {
			case 0:
				ops = append(ops, TxnOp{Verb: TxnSet, Key: k, Value: []byte{byte(i)}})
			case 1:
				ops = append(ops, TxnOp{Verb: TxnCAS, Key: k, Value: []byte{byte(i)}, Index: uint64(r.IntN(i + 1))})
			case 2:
				ops = append(ops, TxnOp{Verb: TxnDelete, Key: k})
			case 3:
				ops = append(ops, TxnOp{Verb: TxnCheckNotExists, Key: k})
			case 4:
				ops = append(ops, TxnOp{Verb: TxnDeleteTree, Key: ""})
			}
		}
		logs = append(logs, Log{Index: uint64(i + 1), Data: txnCmd(ops...).Encode()})
	}
	one, many := openTestStore(t), openTestStore(t)
	mustApply(t, one, logs...)
	for i := 0; i < len(logs); {
		n := 1 + r.IntN(20)
		mustApply(t, many, logs[i:min(i+n, len(logs))]...)
		i += n
	}
	if a, b := mustDigest(t, one), mustDigest(t, many); a != b {
		t.Fatalf("digests differ: %+v vs %+v", a, b)
	}
}

func TestTxnGetTreeAnswerIsBounded(t *testing.T) {
	s := openTestStore(t)
	big := make([]byte, 500<<10)
	var cmds []Command
	for i := range MaxTxnResultBytes/len(big) + 2 {
		cmds = append(cmds, Command{Op: OpSet, Key: fmt.Sprintf("big/%03d", i), Value: big})
	}
	mustApply(t, s, logsFrom(1, cmds...)...)
	next := uint64(len(cmds) + 1)
	res := mustApply(t, s, logsFrom(next, txnCmd(
		TxnOp{Verb: TxnSet, Key: "marker", Value: []byte("x")},
		TxnOp{Verb: TxnGetTree, Key: "big/"},
	))...)[0]
	if res.OK || len(res.Txn.Errors) != 1 || res.Txn.Errors[0].OpIndex != 1 || !strings.Contains(res.Txn.Errors[0].What, "over the 32 MiB limit") {
		t.Fatalf("oversized get-tree: %+v", res.Txn)
	}
	if _, ok, _ := s.Get("marker"); ok {
		t.Fatal("the transaction with the refused get-tree was not rolled back")
	}
	res = mustApply(t, s, logsFrom(next+1, txnCmd(TxnOp{Verb: TxnGetTree, Key: "big/00"}))...)[0]
	if !res.OK || len(res.Txn.Results) != 10 {
		t.Fatalf("small get-tree: ok %v, %d results, want 10", res.OK, len(res.Txn.Results))
	}
}

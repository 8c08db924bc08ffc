package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/httpapi/wire"
	"github.com/raftkv/raftkv/internal/testcluster"
)

func txnBody(t *testing.T, ops ...wire.TxnKVOp) []byte {
	t.Helper()
	in := make([]wire.TxnOp, len(ops))
	for i := range ops {
		in[i] = wire.TxnOp{KV: &ops[i]}
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func doTxn(t *testing.T, url string, ops ...wire.TxnKVOp) (int, wire.TxnResponse, []byte) {
	t.Helper()
	resp, body := do(t, http.MethodPut, url+"/v1/txn", txnBody(t, ops...))
	var out wire.TxnResponse
	if resp.StatusCode == 200 || resp.StatusCode == 409 {
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatalf("txn answer %d %s: %v", resp.StatusCode, body, err)
		}
	}
	return resp.StatusCode, out, body
}

func TestTxnAllOrNothing(t *testing.T) {
	c := testcluster.Start(t, 3)
	leader := c.Leader()
	var follower *testcluster.Node
	for _, n := range c.Nodes {
		if n != leader {
			follower = n
			break
		}
	}
	do(t, http.MethodPut, leader.URL()+"/v1/kv/app/a", []byte("1"))

	// Through a follower: forwarded to the leader, answered in Consul's shape.
	code, out, body := doTxn(t, follower.URL(),
		wire.TxnKVOp{Verb: "get", Key: "app/a"},
		wire.TxnKVOp{Verb: "set", Key: "app/b", Value: []byte("2"), Flags: 42},
		wire.TxnKVOp{Verb: "cas", Key: "app/c", Value: []byte("3"), Index: 0},
		wire.TxnKVOp{Verb: "get-tree", Key: "app/"},
	)
	if code != 200 || len(out.Errors) != 0 || len(out.Results) != 6 {
		t.Fatalf("txn: %d %s", code, body)
	}
	if string(out.Results[0].KV.Value) != "1" || out.Results[1].KV.Key != "app/b" || out.Results[1].KV.Value != nil ||
		out.Results[1].KV.Flags != 42 || out.Results[1].KV.ModifyIndex != out.Results[2].KV.ModifyIndex {
		t.Fatalf("txn results: %s", body)
	}
	if got := out.Results[3:]; got[0].KV.Key != "app/a" || string(got[1].KV.Value) != "2" || string(got[2].KV.Value) != "3" {
		t.Fatalf("get-tree results: %s", body)
	}
	idxB := out.Results[1].KV.ModifyIndex

	// One failing op: 409, every failing op named, nothing applied.
	code, out, body = doTxn(t, follower.URL(),
		wire.TxnKVOp{Verb: "set", Key: "app/a", Value: []byte("changed")},
		wire.TxnKVOp{Verb: "check-index", Key: "app/b", Index: idxB + 1000},
		wire.TxnKVOp{Verb: "check-not-exists", Key: "app/c"},
		wire.TxnKVOp{Verb: "delete-tree", Key: "app/"},
	)
	if code != 409 || out.Results != nil || len(out.Errors) != 2 || out.Errors[0].OpIndex != 1 || out.Errors[1].OpIndex != 2 {
		t.Fatalf("failing txn: %d %s", code, body)
	}
	if !strings.Contains(out.Errors[1].What, `"app/c" exists`) {
		t.Errorf("error text: %s", body)
	}
	for _, n := range c.Nodes {
		resp, body := do(t, http.MethodGet, n.URL()+"/v1/kv/app/?recurse", nil)
		var pairs []wire.KVPair
		if err := json.Unmarshal(body, &pairs); err != nil || resp.StatusCode != 200 || len(pairs) != 3 || string(pairs[0].Value) != "1" {
			t.Fatalf("after failed txn on %s: %d %s", n.ID, resp.StatusCode, body)
		}
	}

	// check-index with the right index passes; delete-cas removes.
	code, _, body = doTxn(t, leader.URL(),
		wire.TxnKVOp{Verb: "check-index", Key: "app/b", Index: idxB},
		wire.TxnKVOp{Verb: "delete-cas", Key: "app/b", Index: idxB},
		wire.TxnKVOp{Verb: "delete", Key: "app/never-was"},
	)
	if code != 200 {
		t.Fatalf("check-index + delete-cas: %d %s", code, body)
	}
	if resp, _ := do(t, http.MethodGet, leader.URL()+"/v1/kv/app/b", nil); resp.StatusCode != 404 {
		t.Fatalf("app/b after delete-cas: %d", resp.StatusCode)
	}
}

func TestTxnRejectsBadRequests(t *testing.T) {
	c := testcluster.Start(t, 1)
	url := c.Nodes[0].URL()
	tooMany := make([]wire.TxnKVOp, 65)
	for i := range tooMany {
		tooMany[i] = wire.TxnKVOp{Verb: "set", Key: fmt.Sprintf("k%d", i)}
	}
	cases := []struct {
		name   string
		body   string
		status int
		want   string
	}{
		{"not json", `{{`, 400, "invalid transaction body"},
		{"object not array", `{"KV":{}}`, 400, "invalid transaction body"},
		{"empty", `[]`, 400, "empty transaction"},
		{"trailing data", `[{"KV":{"Verb":"get","Key":"a"}}] []`, 400, "data after"},
		{"unknown verb", `[{"KV":{"Verb":"frob","Key":"a"}}]`, 400, `unknown verb "frob"`},
		{"session verb", `[{"KV":{"Verb":"lock","Key":"a","Session":"x"}}]`, 400, "sessions"},
		{"node op", `[{"Node":{"Verb":"get"}}]`, 400, "only KV operations"},
		{"missing KV", `[{}]`, 400, `missing "KV"`},
		{"empty key", `[{"KV":{"Verb":"set","Key":""}}]`, 400, "operation 0"},
		{"bad base64", `[{"KV":{"Verb":"set","Key":"a","Value":"!!"}}]`, 400, "invalid transaction body"},
		{"value on get", `[{"KV":{"Verb":"get","Key":"a","Value":"eA=="}}]`, 400, "takes no value"},
		{"too many ops", string(txnBody(t, tooMany...)), 413, "limit is 64"},
	}
	for _, tc := range cases {
		resp, body := do(t, http.MethodPut, url+"/v1/txn", []byte(tc.body))
		var e wire.Error
		if resp.StatusCode != tc.status || json.Unmarshal(body, &e) != nil || !strings.Contains(e.Error, tc.want) || e.Outcome != wire.OutcomeFailed {
			t.Errorf("%s: %d %s; want %d with %q", tc.name, resp.StatusCode, body, tc.status, tc.want)
		}
	}
	// 64 ops of 10 KiB values: within the op limit, over the 512 KiB size limit.
	big := make([]wire.TxnKVOp, 64)
	for i := range big {
		big[i] = wire.TxnKVOp{Verb: "set", Key: fmt.Sprintf("k%d", i), Value: make([]byte, 10<<10)}
	}
	if resp, body := do(t, http.MethodPut, url+"/v1/txn", txnBody(t, big...)); resp.StatusCode != 413 {
		t.Errorf("oversized txn: %d %s", resp.StatusCode, body)
	}
	huge := bytes.Repeat([]byte(" "), 2<<20)
	if resp, body := do(t, http.MethodPut, url+"/v1/txn", huge); resp.StatusCode != 413 || !strings.Contains(string(body), "1 MiB limit") {
		t.Errorf("2 MiB txn body: %d %s, want 413", resp.StatusCode, body)
	}
	if resp, _ := do(t, http.MethodGet, url+"/v1/txn", nil); resp.StatusCode != 405 {
		t.Errorf("GET /v1/txn: %d, want 405", resp.StatusCode)
	}
	// Nothing was written by any of them.
	if resp, body := do(t, http.MethodGet, url+"/v1/kv/?keys", nil); resp.StatusCode != 404 {
		t.Errorf("keys after rejected txns: %d %s", resp.StatusCode, body)
	}
}

// Bank transfers under concurrency through every node: each transfer is a
// txn of two CAS ops; concurrent read-only get-tree txns must always see the
// same total, and at the end every account sums to the start.
func TestTxnConcurrentTransfersKeepTotal(t *testing.T) {
	c := testcluster.Start(t, 3)
	const accounts, start = 5, 100
	for i := range accounts {
		do(t, http.MethodPut, fmt.Sprintf("%s/v1/kv/bank/%d", c.Nodes[0].URL(), i), []byte(strconv.Itoa(start)))
	}
	sum := func(results []wire.TxnResult) (int, error) {
		total := 0
		for _, r := range results {
			v, err := strconv.Atoi(string(r.KV.Value))
			if err != nil {
				return 0, fmt.Errorf("account %s: %q", r.KV.Key, r.KV.Value)
			}
			total += v
		}
		return total, nil
	}
	var (
		wg        sync.WaitGroup
		done      = make(chan struct{})
		transfers atomic.Int64
		conflicts atomic.Int64
		errs      = make(chan error, 64)
	)
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	for w := range 8 {
		node := c.Nodes[w%len(c.Nodes)]
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for time.Now().Before(deadline) {
				from, to := r.IntN(accounts), r.IntN(accounts)
				if from == to {
					continue
				}
				code, out, body := doTxn(t, node.URL(),
					wire.TxnKVOp{Verb: "get", Key: fmt.Sprintf("bank/%d", from)},
					wire.TxnKVOp{Verb: "get", Key: fmt.Sprintf("bank/%d", to)})
				if code != 200 {
					report(fmt.Errorf("read txn: %d %s", code, body))
					return
				}
				a, b := out.Results[0].KV, out.Results[1].KV
				av, _ := strconv.Atoi(string(a.Value))
				bv, _ := strconv.Atoi(string(b.Value))
				amount := 1 + r.IntN(10)
				code, _, body = doTxn(t, node.URL(),
					wire.TxnKVOp{Verb: "cas", Key: a.Key, Index: a.ModifyIndex, Value: []byte(strconv.Itoa(av - amount))},
					wire.TxnKVOp{Verb: "cas", Key: b.Key, Index: b.ModifyIndex, Value: []byte(strconv.Itoa(bv + amount))})
				switch code {
				case 200:
					transfers.Add(1)
				case 409:
					conflicts.Add(1)
				default:
					report(fmt.Errorf("transfer txn: %d %s", code, body))
					return
				}
			}
		})
	}
	var audits atomic.Int64
	wg.Go(func() { // auditor: a read-only txn sees one point in time
		for {
			select {
			case <-done:
				return
			default:
			}
			code, out, body := doTxn(t, c.Nodes[1].URL(), wire.TxnKVOp{Verb: "get-tree", Key: "bank/"})
			if code != 200 {
				report(fmt.Errorf("audit txn: %d %s", code, body))
				return
			}
			if total, err := sum(out.Results); err != nil || total != accounts*start || len(out.Results) != accounts {
				report(fmt.Errorf("audit saw total %d over %d accounts (%v), want %d", total, len(out.Results), err, accounts*start))
				return
			}
			audits.Add(1)
		}
	})
	time.AfterFunc(time.Until(deadline), func() { close(done) })
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	code, out, body := doTxn(t, c.Nodes[2].URL(), wire.TxnKVOp{Verb: "get-tree", Key: "bank/"})
	total, err := sum(out.Results)
	if code != 200 || err != nil || total != accounts*start {
		t.Fatalf("final total %d (%v): %d %s", total, err, code, body)
	}
	if transfers.Load() == 0 || conflicts.Load() == 0 || audits.Load() == 0 {
		t.Fatalf("the test did not exercise contention: %d transfers, %d conflicts, %d audits", transfers.Load(), conflicts.Load(), audits.Load())
	}
	t.Logf("%d transfers, %d conflicts (409, rolled back), %d audits, total stayed %d", transfers.Load(), conflicts.Load(), audits.Load(), total)
}

package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/httpapi/wire"
	"github.com/raftkv/raftkv/internal/testcluster"
)

// TestListingOverLimit: GET ?recurse whose answer would hold more than the
// 32 MiB listing limit is refused with 400 and a JSON error saying how to
// list instead, without reading (much) more than the limit into memory;
// narrower listings and ?keys still answer, and the node keeps serving.
func TestListingOverLimit(t *testing.T) {
	c := testcluster.Start(t, 1)
	nd := c.WaitLeader(5 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := client.New(nd.HTTPAddr, 20*time.Second)

	// 66 values of 512 KiB: 33 MiB under "big/", 4 writers.
	const n, size = 66, 512 << 10
	value := bytes.Repeat([]byte("v"), size)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < n; i += 4 {
				if _, _, err := cl.Put(ctx, fmt.Sprintf("big/%02d", i), value, client.PutOptions{}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	get := func(path string) (int, []byte) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, nd.URL()+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		if _, err := b.ReadFrom(resp.Body); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, b.Bytes()
	}
	for _, path := range []string{"/v1/kv/big/?recurse", "/v1/kv/?recurse", "/v1/kv/big/?recurse&stale"} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		status, body := get(path)
		runtime.ReadMemStats(&after)
		var e wire.Error
		if err := json.Unmarshal(body, &e); err != nil || status != http.StatusBadRequest ||
			!strings.Contains(e.Error, "32 MiB answer limit") || e.Outcome != wire.OutcomeFailed {
			t.Fatalf("GET %s: %d %.300q, want 400 with a JSON error about the 32 MiB answer limit", path, status, body)
		}
		// The 33 MiB of values alone, copied and then base64-encoded in the
		// JSON answer, would allocate over 75 MiB.
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 48<<20 {
			t.Errorf("GET %s: %d MiB allocated to refuse it, want under 48 MiB", path, alloc>>20)
		}
	}
	t.Logf("refused: %s", func() string { _, b := get("/v1/kv/big/?recurse"); return strings.TrimSpace(string(b)) }())

	// Narrower listings answer.
	pairs, err := cl.List(ctx, "big/1", client.Default)
	if err != nil || len(pairs) != 10 || len(pairs[3].Value) != size {
		t.Fatalf("?recurse of big/1: %d entries, %v; want 10 of %d bytes", len(pairs), err, size)
	}
	keys, err := cl.Keys(ctx, "big/", "", client.Default)
	if err != nil || len(keys) != n {
		t.Fatalf("?keys of big/: %d keys, %v; want %d", len(keys), err, n)
	}
	// The node keeps serving writes and reads.
	if _, _, err := cl.Put(ctx, "after", []byte("ok"), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if p, err := cl.Get(ctx, "after", client.Consistent); err != nil || string(p.Value) != "ok" {
		t.Fatalf("read after the refused listings: %q, %v", p.Value, err)
	}
}

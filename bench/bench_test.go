package bench

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// The tool's own per-request cost: it must stay far below the server's, or the tool measures
// itself. Compare with `go test -bench . ./bench | benchstat`.

func BenchmarkRecorderRecord(b *testing.B) {
	r := newRecorder()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.record(OpWrite, time.Duration(i%5000)*time.Microsecond, outcomeOK, nil)
	}
}

func BenchmarkKVURL(b *testing.B) {
	w := newWorker(DefaultConfig(), http.DefaultClient, []string{"http://127.0.0.1:8501"}, 1, false)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_ = w.kvURL(i%10000, "?raw&stale")
	}
}

// BenchmarkWorkerWrite is one PUT through the worker against a server that does nothing:
// the client side of the loopback floor.
func BenchmarkWorkerWrite(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "true")
	}))
	defer srv.Close()
	hc := newHTTPClient(1, 0, 10*time.Second, nil)
	defer hc.CloseIdleConnections()
	w := newWorker(DefaultConfig(), hc, []string{srv.URL}, 1, false)
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := w.write(ctx, i%10000); err != nil {
			b.Fatal(err)
		}
	}
}

package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"time"
)

// fsyncBlock is what the fsync baseline appends before each fdatasync: one page, about what a
// small Raft batch adds to the log.
const fsyncBlock = 4096

// Baselines are the floors measured in the same run as the load.
type Baselines struct {
	Fsync *FsyncBaseline `json:"fsync"`
	HTTP  []HTTPBaseline `json:"http"`
}

// FsyncBaseline is the rate of append-4KiB-then-fdatasync on one file, one at a time.
type FsyncBaseline struct {
	Dir       string  `json:"dir"`
	BlockSize int     `json:"block_size"`
	Ops       int64   `json:"ops"`
	PerSec    float64 `json:"per_sec"`
	Latency   Latency `json:"latency"`
	// Rounds is every round's rate; the figures above are the best round's.
	Rounds []float64 `json:"rounds"`
}

// HTTPBaseline is the round-trip floor: the same clients and request shapes against a
// trivial in-process net/http server on loopback that does no work.
type HTTPBaseline struct {
	Clients  int     `json:"clients"`
	Workload string  `json:"workload"`
	Ops      int64   `json:"ops"`
	PerSec   float64 `json:"per_sec"`
	Latency  Latency `json:"latency"`
	// Rounds is every round's rate; the figures above are the best round's.
	Rounds []float64 `json:"rounds"`
}

// forClients returns the HTTP baseline measured with n clients, or nil.
func (b *Baselines) forClients(n int) *HTTPBaseline {
	if b == nil {
		return nil
	}
	for i := range b.HTTP {
		if b.HTTP[i].Clients == n {
			return &b.HTTP[i]
		}
	}
	return nil
}

// measureBaselines measures the fsync rate and the 1-client loopback floor. The floors at other
// client counts are measured by floorFor right before the run they are compared with, so that
// both see the same machine.
func measureBaselines(ctx context.Context, cfg Config) (*Baselines, error) {
	var fs *FsyncBaseline
	var rounds []float64
	for range cfg.BaselineRounds {
		r, err := measureFsync(ctx, cfg.DataDir, cfg.BaselineDuration)
		if err != nil {
			return nil, fmt.Errorf("fsync: %w", err)
		}
		rounds = append(rounds, r.PerSec)
		if fs == nil || r.PerSec > fs.PerSec {
			fs = r
		}
	}
	fs.Rounds = rounds
	b := &Baselines{Fsync: fs}
	if err := b.floorFor(ctx, cfg, 1); err != nil {
		return nil, err
	}
	return b, nil
}

// floorFor measures the loopback HTTP floor with n clients, unless it already has.
func (b *Baselines) floorFor(ctx context.Context, cfg Config, n int) error {
	if b.forClients(n) != nil {
		return nil
	}
	var best *HTTPBaseline
	var rounds []float64
	for range cfg.BaselineRounds {
		h, err := measureHTTPFloor(ctx, cfg, n)
		if err != nil {
			return fmt.Errorf("loopback http: %w", err)
		}
		rounds = append(rounds, h.PerSec)
		if best == nil || h.PerSec > best.PerSec {
			best = &h
		}
	}
	best.Rounds = rounds
	b.HTTP = append(b.HTTP, *best)
	slices.SortFunc(b.HTTP, func(x, y HTTPBaseline) int { return x.Clients - y.Clients })
	return nil
}

// measureFsync appends fsyncBlock bytes and fdatasyncs, in a loop, for d, in a temporary file
// in dir, and removes the file. Appending (rather than overwriting one block) makes each sync
// also persist the file's new size, as a log append does.
func measureFsync(ctx context.Context, dir string, d time.Duration) (_ *FsyncBaseline, err error) {
	f, err := os.CreateTemp(dir, "raftkv-bench-fsync-*")
	if err != nil {
		return nil, err
	}
	defer func() {
		err = errors.Join(err, f.Close(), os.Remove(f.Name()))
	}()
	block := makeValue(fsyncBlock, 1)
	h := newHist()
	start := time.Now()
	for time.Since(start) < d && ctx.Err() == nil {
		t := time.Now()
		if _, err := f.Write(block); err != nil {
			return nil, err
		}
		if err := fdatasync(f); err != nil {
			return nil, fmt.Errorf("fdatasync: %w", err)
		}
		_ = h.RecordValue(min(max(time.Since(t).Microseconds(), histMin), histMax))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	elapsed := time.Since(start)
	return &FsyncBaseline{
		Dir:       dir,
		BlockSize: fsyncBlock,
		Ops:       h.TotalCount(),
		PerSec:    float64(h.TotalCount()) / elapsed.Seconds(),
		Latency:   summarize(h),
	}, nil
}

// floorWorkload is the request shape the HTTP floor uses for a workload: a CAS is a PUT.
func floorWorkload(workload string) string {
	if workload == WorkloadCAS {
		return WorkloadPut
	}
	return workload
}

// measureHTTPFloor runs n clients of the workload's request shape for cfg.BaselineDuration
// against an in-process server on 127.0.0.1:0 that answers at once: "true" to a PUT, a value
// of cfg.ValueSize bytes to a GET.
func measureHTTPFloor(ctx context.Context, cfg Config, n int) (HTTPBaseline, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return HTTPBaseline{}, err
	}
	value := makeValue(cfg.ValueSize, 2)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("X-Consul-Index", "1")
			if r.Method == http.MethodGet {
				_, _ = w.Write(value)
				return
			}
			_, _ = io.WriteString(w, "true")
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	defer func() {
		_ = srv.Close()
		<-serveErr
	}()

	hc := newHTTPClient(n, cfg.Conns, cfg.Timeout, nil)
	defer hc.CloseIdleConnections()
	workload := floorWorkload(cfg.Workload)
	base := "http://" + ln.Addr().String()
	workers := make([]*worker, n)
	for i := range workers {
		workers[i] = newWorker(cfg, hc, []string{base}, cfg.Seed+uint64(i), true)
	}
	elapsed := drive(ctx, cfg.BaselineDuration, 0, workers, nil, "",
		func(ctx context.Context, w *worker) error { return w.step(ctx, workload) })
	if err := ctx.Err(); err != nil {
		return HTTPBaseline{}, err
	}
	recs := make([]*recorder, n)
	for i, w := range workers {
		recs[i] = w.rec
	}
	all := newOpStats()
	for _, s := range mergeRecorders(recs) {
		all.merge(s)
	}
	if len(all.errors) > 0 {
		return HTTPBaseline{}, fmt.Errorf("errors against the in-process server: %v", all.errors)
	}
	return HTTPBaseline{
		Clients:  n,
		Workload: workload,
		Ops:      all.hist.TotalCount(),
		PerSec:   float64(all.hist.TotalCount()) / elapsed.Seconds(),
		Latency:  summarize(all.hist),
	}, nil
}

package bench

import (
	"maps"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram bounds, in microseconds: 1µs to 60s at 3 significant figures (about 0.1% error).
const (
	histMin     = 1
	histMax     = 60_000_000
	histSigFigs = 3
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histSigFigs) }

// Operation kinds, one histogram each.
const (
	OpRead  = "read"
	OpWrite = "write"
	OpCAS   = "cas"
)

// opStats accumulates one operation kind.
type opStats struct {
	hist   *hdrhistogram.Histogram
	errors map[string]int64
	misses int64 // reads answered 404 when no prefill promised the key
	casNo  int64 // CAS answered false (a lost race, not an error)
}

func newOpStats() *opStats {
	return &opStats{hist: newHist(), errors: map[string]int64{}}
}

func (s *opStats) merge(o *opStats) {
	s.hist.Merge(o.hist)
	for k, v := range o.errors {
		s.errors[k] += v
	}
	s.misses += o.misses
	s.casNo += o.casNo
}

// recorder belongs to one client goroutine; the progress reporter reads it under mu.
// The lock is uncontended except once a second, which costs a few tens of nanoseconds per
// request against requests that take tens of microseconds at the very least.
type recorder struct {
	mu       sync.Mutex
	ops      map[string]*opStats
	interval *hdrhistogram.Histogram // every op kind, since the last progress tick
}

func newRecorder() *recorder {
	return &recorder{ops: map[string]*opStats{}, interval: newHist()}
}

// outcome is what a finished request adds to the counts besides its latency.
type outcome int

const (
	outcomeOK outcome = iota
	outcomeMiss
	outcomeCASFalse
)

func (r *recorder) record(op string, d time.Duration, out outcome, err error) {
	us := max(d.Microseconds(), histMin)
	r.mu.Lock()
	s := r.ops[op]
	if s == nil {
		s = newOpStats()
		r.ops[op] = s
	}
	if err != nil {
		s.errors[errorKind(err)]++
	} else {
		_ = s.hist.RecordValue(min(us, histMax)) // clamped, so it cannot fail
		_ = r.interval.RecordValue(min(us, histMax))
		switch out {
		case outcomeMiss:
			s.misses++
		case outcomeCASFalse:
			s.casNo++
		}
	}
	r.mu.Unlock()
}

// takeInterval returns the latencies since the previous call and starts a new interval.
func (r *recorder) takeInterval(into *hdrhistogram.Histogram) {
	r.mu.Lock()
	into.Merge(r.interval)
	r.interval.Reset()
	r.mu.Unlock()
}

// errorCount is the number of failed requests so far.
func (r *recorder) errorCount() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n int64
	for _, s := range r.ops {
		for _, v := range s.errors {
			n += v
		}
	}
	return n
}

// mergeRecorders sums the per-client stats by operation kind.
func mergeRecorders(rs []*recorder) map[string]*opStats {
	out := map[string]*opStats{}
	for _, r := range rs {
		r.mu.Lock()
		for op, s := range r.ops {
			if out[op] == nil {
				out[op] = newOpStats()
			}
			out[op].merge(s)
		}
		r.mu.Unlock()
	}
	return out
}

// Latency summarises a histogram, in milliseconds.
type Latency struct {
	Mean float64 `json:"mean_ms"`
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p99_9_ms"`
	Max  float64 `json:"max_ms"`
}

func summarize(h *hdrhistogram.Histogram) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Latency{
		Mean: h.Mean() / 1000,
		P50:  ms(h.ValueAtQuantile(50)),
		P90:  ms(h.ValueAtQuantile(90)),
		P99:  ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)),
		Max:  ms(h.Max()),
	}
}

// counter is a shared count of finished requests, read by the progress line.
type counter struct{ n atomic.Int64 }

func cloneErrors(m map[string]int64) map[string]int64 {
	if len(m) == 0 {
		return nil
	}
	return maps.Clone(m)
}

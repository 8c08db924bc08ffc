package bench

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// startProgress prints, once a second, the requests finished so far, the rate and latency
// over the last second, and the error count. On a terminal the line rewrites itself;
// elsewhere (a log file, CI) each tick is a line. The returned func stops it and waits.
func startProgress(out io.Writer, label string, start time.Time, workers []*worker) func() {
	tty := isTerminal(out)
	done := make(chan struct{})
	var wg sync.WaitGroup
	interval := newHist()
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		last := start
		var total int64
		for {
			select {
			case <-done:
				if tty {
					fmt.Fprintln(out)
				}
				return
			case now := <-t.C:
				interval.Reset()
				var errs int64
				for _, w := range workers {
					w.rec.takeInterval(interval)
					errs += w.rec.errorCount()
				}
				n := interval.TotalCount()
				total += n
				rate := float64(n) / now.Sub(last).Seconds()
				last = now
				line := fmt.Sprintf("%s [%4.0fs] %9d ok %9.0f/s  p50 %7.2fms  p99 %7.2fms  errors %d",
					label, now.Sub(start).Seconds(), total, rate,
					float64(interval.ValueAtQuantile(50))/1000, float64(interval.ValueAtQuantile(99))/1000, errs)
				if tty {
					fmt.Fprintf(out, "\r%s\x1b[K", line)
				} else {
					fmt.Fprintln(out, line)
				}
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// newRaftLogger returns an hclog.Logger for hashicorp/raft whose every line
// is re-emitted through the node's slog.Logger, so a raftkv process has one
// log stream in one format.
func newRaftLogger(l *slog.Logger) hclog.Logger {
	il := hclog.NewInterceptLogger(&hclog.LoggerOptions{
		Name:   "raft",
		Level:  hclog.Debug,
		Output: io.Discard,
	})
	il.RegisterSink(&slogSink{l: l, last: map[string]*repeat{}})
	return il
}

// repetitive lists raft messages that repeat on every heartbeat or retry
// while a peer is down. Each (message, peer) pair is logged once, then at
// most once per repeatEvery with the count suppressed meanwhile; the
// failure detector logs the state changes that matter.
var repetitive = map[string]bool{
	"failed to heartbeat to":           true,
	"failed to appendEntries to":       true,
	"failed to make requestVote RPC":   true,
	"failed to contact":                true,
	"failed to pipeline appendEntries": true,
}

const repeatEvery = 30 * time.Second

type repeat struct {
	at         time.Time
	suppressed int
}

type slogSink struct {
	l    *slog.Logger
	mu   sync.Mutex
	last map[string]*repeat
}

func (s *slogSink) Accept(name string, level hclog.Level, msg string, args ...interface{}) {
	lvl := slogLevel(level)
	ctx := context.Background()
	if !s.l.Enabled(ctx, lvl) {
		return
	}
	attrs := make([]any, 0, len(args)+4)
	attrs = append(attrs, slog.String("component", name))
	attrs = append(attrs, args...)
	if repetitive[msg] {
		n, ok := s.allow(msg, args)
		if !ok {
			return
		}
		if n > 0 {
			attrs = append(attrs, slog.Int("suppressed_repeats", n))
		}
	}
	s.l.Log(ctx, lvl, msg, attrs...)
}

// allow reports whether a repetitive message may be logged now, and how
// many were suppressed since the last one.
func (s *slogSink) allow(msg string, args []interface{}) (int, bool) {
	key := msg
	for i := 0; i+1 < len(args); i += 2 {
		if k, _ := args[i].(string); k == "peer" || k == "target" {
			key += fmt.Sprint(args[i+1])
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.last[key]
	now := time.Now()
	if ok && now.Sub(r.at) < repeatEvery {
		r.suppressed++
		return 0, false
	}
	if !ok {
		if len(s.last) > 1024 { // peers come and go; keep the map bounded
			clear(s.last)
		}
		r = &repeat{}
		s.last[key] = r
	}
	n := r.suppressed
	r.at, r.suppressed = now, 0
	return n, true
}

func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace, hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

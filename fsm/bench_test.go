package fsm

import (
	"fmt"
	"testing"
)

func BenchmarkApplyBatch(b *testing.B) {
	value := make([]byte, 128)
	for _, size := range []int{1, 64, 512} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			s := openTestStore(b)
			batch := make([]Log, size)
			idx := uint64(0)
			b.ReportAllocs()
			for b.Loop() {
				for i := range batch {
					idx++
					batch[i] = Log{Index: idx, Data: Command{Op: OpSet, Key: fmt.Sprintf("key/%08d", idx%100000), Value: value}.Encode()}
				}
				if _, err := s.ApplyBatch(batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

func BenchmarkEncode(b *testing.B) {
	c := Command{Op: OpCAS, Key: "service/web/config", Value: make([]byte, 256), Flags: 42, Index: 123456}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = c.AppendEncode(buf[:0])
	}
}

func BenchmarkDecode(b *testing.B) {
	enc := Command{Op: OpCAS, Key: "service/web/config", Value: make([]byte, 256), Flags: 42, Index: 123456}.Encode()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeCommand(enc); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGet(b *testing.B) {
	s := openTestStore(b)
	const n = 10000
	logs := make([]Log, n)
	for i := range logs {
		logs[i] = Log{Index: uint64(i + 1), Data: Command{Op: OpSet, Key: fmt.Sprintf("key/%08d", i), Value: make([]byte, 128)}.Encode()}
	}
	mustApply(b, s, logs...)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, ok, err := s.Get(fmt.Sprintf("key/%08d", i%n)); err != nil || !ok {
			b.Fatalf("Get: %v, found %v", err, ok)
		}
		i++
	}
}

// BenchmarkApplyOpBatch applies entries each carrying size coalesced writes (what the leader's write
// batcher proposes), committing every entry: compare writes/s with BenchmarkApplyBatch's entries/s.
func BenchmarkApplyOpBatch(b *testing.B) {
	value := make([]byte, 100)
	for _, size := range []int{1, 32, 256} {
		b.Run(fmt.Sprintf("writes=%d", size), func(b *testing.B) {
			s := openTestStore(b)
			cmds := make([]Command, size)
			idx := uint64(0)
			b.ReportAllocs()
			for b.Loop() {
				idx++
				for i := range cmds {
					cmds[i] = Command{Op: OpSet, Key: fmt.Sprintf("key/%08d", (int(idx)*size+i)%100000), Value: value}
				}
				entry := Command{Op: OpBatch, Value: EncodeBatch(cmds)}.Encode()
				if _, err := s.ApplyBatch([]Log{{Index: idx, Data: entry}}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "writes/s")
		})
	}
}

func BenchmarkEncodeBatch(b *testing.B) {
	cmds := make([]Command, 64)
	for i := range cmds {
		cmds[i] = Command{Op: OpSet, Key: fmt.Sprintf("service/web/%04d", i), Value: make([]byte, 100)}
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = Command{Op: OpBatch, Value: EncodeBatch(cmds)}.Encode()
	}
}

// BenchmarkApplyPending applies single-write entries into the pending transaction and commits every
// 64 of them, as the state machine does under write load with a commit interval.
func BenchmarkApplyPending(b *testing.B) {
	s := openTestStore(b)
	value := make([]byte, 100)
	idx := uint64(0)
	b.ReportAllocs()
	for b.Loop() {
		idx++
		l := Log{Index: idx, Data: Command{Op: OpSet, Key: fmt.Sprintf("key/%08d", idx%100000), Value: value}.Encode()}
		if _, err := s.ApplyPending([]Log{l}); err != nil {
			b.Fatal(err)
		}
		if idx%64 == 0 {
			if _, err := s.Commit(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}

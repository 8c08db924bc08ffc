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

package jepsenlite

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"testing"
)

// fakeCluster lays out n nodes on loopback ports nobody listens on: no
// leader is ever found, which the nemesis must cope with.
func fakeCluster(t *testing.T, n int) *Cluster {
	t.Helper()
	c, err := NewCluster(ClusterConfig{Nodes: n, Dir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// connected returns, for each node, how many others it can reach.
func connected(n int, grudge map[int][]int) []int {
	out := make([]int, n)
	for i := 0; i < n; i++ {
		out[i] = n - 1 - len(grudge[i])
	}
	return out
}

func TestPartitionShapes(t *testing.T) {
	for _, tc := range []struct {
		nodes int
		shape string
		check func(t *testing.T, conn []int)
	}{
		{3, "isolate-leader", func(t *testing.T, conn []int) { wantCounts(t, conn, map[int]int{0: 1, 1: 2}) }},
		{3, "halves", func(t *testing.T, conn []int) { wantCounts(t, conn, map[int]int{0: 1, 1: 2}) }},
		{5, "halves", func(t *testing.T, conn []int) { wantCounts(t, conn, map[int]int{1: 2, 2: 3}) }},
		// ring: everyone sees exactly its two neighbours (a majority with itself).
		{5, "ring", func(t *testing.T, conn []int) { wantCounts(t, conn, map[int]int{2: 5}) }},
		// bridge: one node sees all four, the others see the bridge and their partner.
		{5, "bridge", func(t *testing.T, conn []int) { wantCounts(t, conn, map[int]int{4: 1, 2: 4}) }},
	} {
		t.Run(fmt.Sprintf("%d-%s", tc.nodes, tc.shape), func(t *testing.T) {
			c := fakeCluster(t, tc.nodes)
			for seed := uint64(0); seed < 20; seed++ {
				nm := NewNemesis(NemesisConfig{Partitions: []string{tc.shape}}, c, nil, nil, seed, slog.New(slog.NewTextHandler(io.Discard, nil)))
				kind, grudge, desc := nm.pickPartition(context.Background())
				if kind != tc.shape {
					t.Fatalf("kind = %s, want %s", kind, tc.shape)
				}
				for a, bs := range grudge {
					for _, b := range bs {
						if !contains2(grudge[b], a) {
							t.Fatalf("seed %d: grudge not symmetric: %d cuts %d but not back (%s)", seed, a, b, desc)
						}
					}
				}
				tc.check(t, connected(tc.nodes, grudge))
			}
		})
	}
}

func contains2(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// wantCounts checks the multiset of per-node connectivity: want maps a
// connectivity to how many nodes have it.
func wantCounts(t *testing.T, conn []int, want map[int]int) {
	t.Helper()
	got := map[int]int{}
	for _, c := range conn {
		got[c]++
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("connectivity counts = %v, want %v (per node %v)", got, want, conn)
	}
}

// TestNemesisSeeded: the same seed makes the same choices.
func TestNemesisSeeded(t *testing.T) {
	c := fakeCluster(t, 5)
	descs := func(seed uint64) []string {
		nm := NewNemesis(NemesisConfig{}, c, nil, nil, seed, slog.New(slog.NewTextHandler(io.Discard, nil)))
		var out []string
		for i := 0; i < 10; i++ {
			_, _, d := nm.pickPartition(context.Background())
			out = append(out, d)
		}
		return out
	}
	a, b, other := descs(42), descs(42), descs(43)
	if !reflect.DeepEqual(a, b) {
		t.Errorf("seed 42 twice: %v vs %v", a, b)
	}
	if reflect.DeepEqual(a, other) {
		t.Errorf("seeds 42 and 43 chose the same partitions: %v", a)
	}
}

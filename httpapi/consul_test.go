package httpapi_test

import (
	"testing"

	consul "github.com/hashicorp/consul/api"

	"github.com/raftkv/raftkv/internal/testcluster"
)

// TestConsulClientCompatibility drives raftkv through HashiCorp's own Consul
// Go client, unchanged: put, get, list, keys, CAS, delete.
func TestConsulClientCompatibility(t *testing.T) {
	c := testcluster.Start(t, 3)
	for _, nd := range []*testcluster.Node{c.Follower(), c.WaitLeader(0)} {
		cfg := consul.DefaultConfig()
		cfg.Address = nd.HTTPAddr
		cl, err := consul.NewClient(cfg)
		if err != nil {
			t.Fatal(err)
		}
		kv := cl.KV()
		prefix := "compat-" + nd.ID + "/"

		wm, err := kv.Put(&consul.KVPair{Key: prefix + "a", Value: []byte("1"), Flags: 42}, nil)
		if err != nil || wm == nil {
			t.Fatalf("%s: put: %v", nd.ID, err)
		}
		if _, err := kv.Put(&consul.KVPair{Key: prefix + "dir/b", Value: []byte("2")}, nil); err != nil {
			t.Fatalf("put b: %v", err)
		}
		p, meta, err := kv.Get(prefix+"a", nil)
		if err != nil || p == nil || string(p.Value) != "1" || p.Flags != 42 {
			t.Fatalf("get a: %+v %v", p, err)
		}
		if meta.LastIndex == 0 || !meta.KnownLeader {
			t.Fatalf("query meta: %+v, want an index and a known leader", meta)
		}
		if p, _, err := kv.Get(prefix+"nope", nil); err != nil || p != nil {
			t.Fatalf("get missing: %+v %v, want nil, nil", p, err)
		}
		list, _, err := kv.List(prefix, nil)
		if err != nil || len(list) != 2 {
			t.Fatalf("list: %d pairs, %v", len(list), err)
		}
		keys, _, err := kv.Keys(prefix, "/", nil)
		if err != nil || len(keys) != 2 || keys[0] != prefix+"a" || keys[1] != prefix+"dir/" {
			t.Fatalf("keys: %v %v", keys, err)
		}
		stale, _, err := kv.Get(prefix+"a", &consul.QueryOptions{AllowStale: true})
		if err != nil || stale == nil {
			t.Fatalf("stale get: %v %v", stale, err)
		}
		// CAS: the stale index loses, the current one wins.
		ok, _, err := kv.CAS(&consul.KVPair{Key: prefix + "a", Value: []byte("3"), ModifyIndex: p.ModifyIndex - 1}, nil)
		if err != nil || ok {
			t.Fatalf("cas with old index: ok=%v err=%v, want false", ok, err)
		}
		ok, _, err = kv.CAS(&consul.KVPair{Key: prefix + "a", Value: []byte("3"), ModifyIndex: p.ModifyIndex}, nil)
		if err != nil || !ok {
			t.Fatalf("cas with current index: ok=%v err=%v, want true", ok, err)
		}
		p2, _, _ := kv.Get(prefix+"a", nil)
		ok, _, err = kv.DeleteCAS(&consul.KVPair{Key: prefix + "a", ModifyIndex: p2.ModifyIndex}, nil)
		if err != nil || !ok {
			t.Fatalf("delete cas: %v %v", ok, err)
		}
		if _, err := kv.DeleteTree(prefix, nil); err != nil {
			t.Fatalf("delete tree: %v", err)
		}
		if list, _, _ := kv.List(prefix, nil); len(list) != 0 {
			t.Fatalf("after delete tree: %d pairs", len(list))
		}
		peers, err := cl.Status().Peers()
		if err != nil || len(peers) != 3 {
			t.Fatalf("status peers: %v %v", peers, err)
		}
		if _, err := cl.Operator().RaftGetConfiguration(nil); err != nil {
			t.Fatalf("raft configuration: %v", err)
		}
	}
}

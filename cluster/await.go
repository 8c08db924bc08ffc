package cluster

import (
	"reflect"

	"github.com/hashicorp/raft"
)

// await waits for a raft future and returns raft.ErrRaftShutdown as soon as
// the node closes.
//
// Why this exists: hashicorp/raft resolves a future when it is committed,
// when leadership is lost, or when raft shuts down, but only for futures it
// still holds in its leader loop. A future still queued in the apply channel
// (buffered with BatchApplyCh) or in the FSM queue when raft shuts down is
// never resolved, and its Error() blocks forever, because raft gives Apply
// futures no shutdown channel. That would leave goroutines waiting on them
// after Close. raft's futures embed an exported ShutdownCh that Error()
// already selects on; bindShutdown fills it with the node's own shutdown
// channel. TestAwaitUnblocksOnShutdown fails if a raft upgrade changes this.
func (n *Node) await(f raft.Future) error {
	bindShutdown(f, n.shutdownCh)
	return f.Error()
}

// bindShutdown sets f's ShutdownCh to ch if f has such a field and it is
// unset. It reports whether f now has a shutdown channel.
func bindShutdown(f any, ch chan struct{}) bool {
	v := reflect.ValueOf(f)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return false
	}
	v = v.Elem()
	if v.Kind() != reflect.Struct {
		return false
	}
	fld := v.FieldByName("ShutdownCh")
	if !fld.IsValid() || !fld.CanSet() || fld.Type() != reflect.TypeOf(ch) {
		return false
	}
	if fld.IsNil() {
		fld.Set(reflect.ValueOf(ch))
	}
	return true
}

//go:build jepsenunsafe

package httpapi

// unsafeLocalReads, only in binaries built with -tags jepsenunsafe, serves
// default (linearizable) reads from the local state machine without
// confirming leadership: a deliberately broken server that jepsen-lite must
// catch (a deposed leader answers reads with stale data). Never ship it.
const unsafeLocalReads = true

// Command jepsen-lite runs raftkv's Jepsen-style harness. Its exit status is
// the verdict: 0 valid, 1 invalid, 2 unknown, 3 harness error.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes.
const (
	exitValid   = 0
	exitInvalid = 1
	exitUnknown = 2
	exitHarness = 3
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code, err := Run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "jepsen-lite:", err)
	}
	os.Exit(code)
}

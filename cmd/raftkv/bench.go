package main

import (
	"crypto/tls"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/bench"
)

func newBenchCmd(g *globals) *cobra.Command {
	return bench.NewCommand(func() (string, *tls.Config) { return g.token, g.tls })
}

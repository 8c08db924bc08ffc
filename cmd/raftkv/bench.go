package main

import (
	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/bench"
)

func newBenchCmd() *cobra.Command { return bench.NewCommand() }

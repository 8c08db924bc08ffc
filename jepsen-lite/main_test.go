package jepsenlite

import (
	"fmt"
	"net"
	"os"
	"testing"
	"time"
)

// TestMain lets the test binary double as a tiny TCP helper that the
// network tests run inside node namespaces:
//
//	JEPSEN_LITE_HELPER=listen:<addr>  accept and close connections forever
//	JEPSEN_LITE_HELPER=dial:<addr>    exit 0 if a TCP connect succeeds within 1s, else 1
func TestMain(m *testing.M) {
	switch h := os.Getenv("JEPSEN_LITE_HELPER"); {
	case len(h) > 7 && h[:7] == "listen:":
		l, err := net.Listen("tcp", h[7:])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		for {
			c, err := l.Accept()
			if err != nil {
				os.Exit(2)
			}
			c.Close()
		}
	case len(h) > 5 && h[:5] == "dial:":
		c, err := net.DialTimeout("tcp", h[5:], time.Second)
		if err != nil {
			os.Exit(1)
		}
		c.Close()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

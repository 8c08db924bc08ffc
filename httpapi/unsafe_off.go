//go:build !jepsenunsafe

package httpapi

// unsafeLocalReads is false in every real build. See unsafe_on.go.
const unsafeLocalReads = false

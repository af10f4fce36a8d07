//go:build !linux

package guarantees_test

import "os/exec"

// dieWithParent does nothing where the kernel offers no parent-death
// signal: there a test run killed at its timeout may leave a child relay.
func dieWithParent(*exec.Cmd) {}

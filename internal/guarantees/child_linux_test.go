package guarantees_test

import (
	"os/exec"
	"syscall"
)

// dieWithParent has the kernel kill a child relay when the test binary
// that started it dies (a test run killed at its timeout), so that no
// relay is left holding a database, a stream or a replication slot.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

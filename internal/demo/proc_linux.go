package demo

import "syscall"

// sysProcAttr puts a child in its own process group, so a Ctrl-C in the
// terminal reaches only the demo, which then stops the children in order;
// and kills the child if the demo itself dies without cleaning up.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// Command leaderjob is the command the exec end-to-end tests run under
// `sidecar exec`. It proves from its own side that no two copies run at
// once and records its interval on CLOCK_MONOTONIC, which all processes on
// the machine share:
//
//   - at start it takes a non-blocking flock on $JOB_LOCK; the kernel holds
//     it until this process is gone (SIGKILL included), so failing to get it
//     means another instance's copy still runs: it logs "overlap" and exits 99;
//   - it appends "start <mono_ns> <token> <identity> <pid>" to $JOB_LOG;
//   - on SIGTERM it appends "end <mono_ns> <token> term <pid>" and exits 0;
//     on SIGUSR1 (forwarded by the wrapper) "end <mono_ns> <token> crash <pid>"
//     and exits 3, as a crash.
//
// Each line is one write to a file opened with O_APPEND, so lines of
// different processes never interleave.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

func mono() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return ts.Nano()
}

func main() {
	log, err := os.OpenFile(os.Getenv("JOB_LOG"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	line := func(format string, args ...any) {
		if _, err := log.WriteString(fmt.Sprintf(format, args...) + "\n"); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGUSR1)

	lock, err := os.OpenFile(os.Getenv("JOB_LOCK"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	token, id, pid := os.Getenv("LEADER_ELECTOR_FENCING_TOKEN"), os.Getenv("LEADER_ELECTOR_IDENTITY"), os.Getpid()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		line("overlap %d %s %s %d", mono(), token, id, pid)
		os.Exit(99)
	}
	line("start %d %s %s %d", mono(), token, id, pid)
	switch <-sigs {
	case syscall.SIGUSR1:
		line("end %d %s crash %d", mono(), token, pid)
		os.Exit(3)
	default:
		line("end %d %s term %d", mono(), token, pid)
		os.Exit(0)
	}
}

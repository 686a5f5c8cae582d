package election

import "golang.org/x/sys/unix"

// monotonicNow reads CLOCK_MONOTONIC, which every process on the machine
// shares (Go's own monotonic readings are relative to process start).
func monotonicNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano()
}

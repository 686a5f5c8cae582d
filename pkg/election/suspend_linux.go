package election

import "golang.org/x/sys/unix"

// suspendedNow returns CLOCK_BOOTTIME − CLOCK_MONOTONIC in nanoseconds: the
// time the machine has spent suspended since boot. CLOCK_MONOTONIC is read
// before and after CLOCK_BOOTTIME, and boot − (first monotonic reading) is
// returned, which can only overstate the suspended time (the safe side: it
// moves deadlines earlier) by the time between the reads. A reading whose
// reads were more than 100 µs apart (the thread was preempted between them)
// is taken again, up to a few times, so one preemption does not inflate the
// value that Clock keeps as its maximum. 0 if a clock cannot be read.
func suspendedNow() int64 {
	const tight = 100_000 // ns
	best := int64(-1)
	bestWindow := int64(-1)
	for range 5 {
		var m1, b, m2 unix.Timespec
		if unix.ClockGettime(unix.CLOCK_MONOTONIC, &m1) != nil ||
			unix.ClockGettime(unix.CLOCK_BOOTTIME, &b) != nil ||
			unix.ClockGettime(unix.CLOCK_MONOTONIC, &m2) != nil {
			return 0
		}
		window := m2.Nano() - m1.Nano()
		if bestWindow < 0 || window < bestWindow {
			best, bestWindow = b.Nano()-m1.Nano(), window
		}
		if window <= tight {
			break
		}
	}
	return max(0, best)
}

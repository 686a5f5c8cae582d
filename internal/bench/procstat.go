package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// procUsage is a process's resource use at one instant.
type procUsage struct {
	At  time.Time
	CPU time.Duration // user + system time of all its live threads
	RSS int64         // resident set size, bytes
	// Anon is the anonymous part of RSS (heap, stacks); the rest is mostly
	// the binary's own pages, shared with other processes running it.
	Anon int64
}

// readUsage reads /proc/<pid>. CPU time is the sum of every thread's
// sum_exec_runtime from /proc/<pid>/task/*/schedstat (nanoseconds), since
// /proc/<pid>/stat counts in 10 ms ticks, too coarse for an idle process.
func readUsage(pid int) (procUsage, error) {
	u := procUsage{At: time.Now()}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, fmt.Errorf("read process status: %w", err)
	}
	if u.RSS, err = statusKB(string(status), "VmRSS:"); err != nil {
		return u, err
	}
	if u.Anon, err = statusKB(string(status), "RssAnon:"); err != nil {
		return u, err
	}
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		return u, fmt.Errorf("no threads of pid %d: %w", pid, err)
	}
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // the thread exited meanwhile
		}
		ns, err := parseSchedstat(string(b))
		if err != nil {
			return u, err
		}
		u.CPU += ns
	}
	return u, nil
}

// statusKB returns the field key (e.g. "VmRSS:") of /proc/<pid>/status in
// bytes.
func statusKB(status, key string) (int64, error) {
	for line := range strings.SplitSeq(status, "\n") {
		v, ok := strings.CutPrefix(line, key)
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("unexpected process status line %q", line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s %w", key, err)
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("no %s in process status", key)
}

// parseSchedstat returns the first field of a schedstat line: time spent
// on the CPU, in nanoseconds.
func parseSchedstat(s string) (time.Duration, error) {
	f := strings.Fields(s)
	if len(f) < 1 {
		return 0, fmt.Errorf("empty schedstat")
	}
	ns, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("schedstat: %w", err)
	}
	return time.Duration(ns), nil
}

// cpuPerSecond is the CPU time used per second of wall time between a and b.
func cpuPerSecond(a, b procUsage) time.Duration {
	wall := b.At.Sub(a.At)
	if wall <= 0 {
		return 0
	}
	return time.Duration(float64(b.CPU-a.CPU) / wall.Seconds())
}

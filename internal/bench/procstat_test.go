package bench

import (
	"os"
	"testing"
	"time"
)

func TestStatusKB(t *testing.T) {
	got, err := statusKB("Name:\tsidecar\nVmPeak:\t  1000 kB\nVmRSS:\t   12345 kB\nThreads:\t7\n", "VmRSS:")
	if err != nil {
		t.Fatal(err)
	}
	if exp := int64(12345 * 1024); got != exp {
		t.Errorf("exp %d, got %d", exp, got)
	}
	if _, err := statusKB("Name:\tx\n", "VmRSS:"); err == nil {
		t.Error("exp an error without VmRSS")
	}
}

func TestParseSchedstat(t *testing.T) {
	got, err := parseSchedstat("123456789 2000 17\n")
	if err != nil {
		t.Fatal(err)
	}
	if exp := 123456789 * time.Nanosecond; got != exp {
		t.Errorf("exp %v, got %v", exp, got)
	}
}

func TestCPUPerSecond(t *testing.T) {
	t0 := time.Now()
	a := procUsage{At: t0, CPU: time.Second}
	b := procUsage{At: t0.Add(10 * time.Second), CPU: time.Second + 5*time.Millisecond}
	if got, exp := cpuPerSecond(a, b), 500*time.Microsecond; got != exp {
		t.Errorf("exp %v, got %v", exp, got)
	}
}

func TestReadUsageOfSelf(t *testing.T) {
	u, err := readUsage(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if u.RSS <= 0 || u.CPU <= 0 {
		t.Errorf("exp positive RSS and CPU, got %+v", u)
	}
}

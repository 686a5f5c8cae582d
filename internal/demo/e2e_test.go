package demo

import (
	"context"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/internal/testutil/sidecartest"
)

// TestRunWithRealSidecars runs the whole demo with the sidecar binary.
func TestRunWithRealSidecars(t *testing.T) {
	bin, err := sidecartest.Build(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	checkTemp := isolateTemp(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	var out syncBuffer
	if err := Run(ctx, Options{Executable: bin}, &out); err != nil {
		t.Fatalf("demo: %v\noutput:\n%s", err, out.String())
	}
	got := out.String()
	t.Logf("demo output:\n%s", got)

	handover := measured(t, got, `graceful handover: SIGTERM demo-\d -> demo-\d led after (\S+)`)
	failover := measured(t, got, `crash failover:    SIGKILL demo-\d -> demo-\d led after (\S+)`)
	// A resigning leader hands over at once; a crashed one is replaced only
	// when its lease expires, at least 2/3 of the 2 s TTL after its last
	// renewal.
	if handover >= DefaultTTL {
		t.Errorf("graceful handover took %v, not less than the TTL %v", handover, DefaultTTL)
	}
	if failover < time.Second || failover <= handover {
		t.Errorf("crash failover took %v (handover %v); a lease can't expire that fast", failover, handover)
	}
	if !strings.Contains(got, "no poll saw two instances claim leadership at once") {
		t.Error("a poll saw two leaders")
	}
	pids := regexp.MustCompile(`\(pid (\d+)\)`).FindAllStringSubmatch(got, -1)
	if len(pids) != DefaultCandidates {
		t.Fatalf("found %d pids in the header, want %d", len(pids), DefaultCandidates)
	}
	for _, m := range pids {
		pid, _ := strconv.Atoi(m[1])
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("sidecar pid %d still exists after the demo (kill 0: %v)", pid, err)
		}
	}
	checkTemp()
}

func measured(t *testing.T, out, pattern string) time.Duration {
	t.Helper()
	m := regexp.MustCompile(pattern).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("output lacks %q", pattern)
	}
	d, err := time.ParseDuration(m[1])
	if err != nil {
		t.Fatalf("duration %q: %v", m[1], err)
	}
	return d
}

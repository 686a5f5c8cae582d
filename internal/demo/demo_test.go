package demo

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestDefaultChildArgs(t *testing.T) {
	got := DefaultChildArgs(Child{ID: "demo-1", HTTPAddr: "127.0.0.1:41235", ControlSocket: "/tmp/d/demo-1.sock",
		EtcdEndpoints: []string{"http://127.0.0.1:2379"}, Election: "demo", TTL: 2 * time.Second})
	want := []string{"--backend", "etcd", "--election", "demo", "--id", "demo-1", "--ttl", "2s", "--http", "127.0.0.1:41235",
		"--control-socket", "/tmp/d/demo-1.sock", "--etcd-endpoints", "http://127.0.0.1:2379", "--log-format", "json", "--log-level", "warn"}
	if !slices.Equal(got, want) {
		t.Fatalf("\ngot  %q\nwant %q", got, want)
	}
}

func TestOptionsDefaults(t *testing.T) {
	o, err := Options{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.Candidates != 3 || o.TTL != 2*time.Second || o.PollInterval != 15*time.Millisecond || len(o.SidecarCommand) != 2 ||
		o.SidecarCommand[1] != "sidecar" || o.Janitor != o.SidecarCommand[0] || o.ChildArgs == nil {
		t.Fatalf("defaults: got %+v", o)
	}
	for _, bad := range []Options{{Candidates: 1}, {Candidates: -2}, {TTL: -time.Second}} {
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("%+v: got nil error", bad)
		}
	}
}

// isolateTemp points the demo's temp dir at an empty directory and returns
// a check that the demo left nothing in it.
func isolateTemp(t *testing.T) func() {
	t.Helper()
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	return func() {
		t.Helper()
		left, err := os.ReadDir(tmp)
		if err != nil {
			t.Fatal(err)
		}
		if len(left) > 0 {
			t.Errorf("demo left %d entries in its temp dir, e.g. %s", len(left), left[0].Name())
		}
	}
}

func lookPath(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("this test needs %s: %v", name, err)
	}
	return p
}

func TestRunFailsCleanlyWhenSidecarsExit(t *testing.T) {
	checkTemp := isolateTemp(t)
	var out syncBuffer
	err := Run(t.Context(), Options{SidecarCommand: []string{lookPath(t, "false")}}, &out)
	if err == nil || !strings.Contains(err.Error(), "demo-1 exited at start") {
		t.Fatalf("got err %v, want demo-1 exited at start", err)
	}
	checkTemp()
}

// processesWithArg lists running processes whose command line has arg.
func processesWithArg(t *testing.T, arg string) []string {
	t.Helper()
	cmdlines, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, p := range cmdlines {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the process ended meanwhile
		}
		if slices.Contains(strings.Split(string(b), "\x00"), arg) {
			found = append(found, p)
		}
	}
	return found
}

func TestRunInterruptedStopsEverything(t *testing.T) {
	checkTemp := isolateTemp(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// A child that never answers; the demo is interrupted while it waits.
	marker := "12345.6789"
	var started []string
	opts := Options{
		SidecarCommand: []string{lookPath(t, "sleep")},
		ChildArgs: func(c Child) []string {
			started = append(started, c.ID)
			cancel()
			return []string{marker}
		},
	}
	var out syncBuffer
	if err := Run(ctx, opts, &out); err != nil {
		t.Fatalf("interrupted demo: got err %v, want nil", err)
	}
	if !slices.Equal(started, []string{"demo-1"}) {
		t.Fatalf("started %v, want only demo-1", started)
	}
	if got := processesWithArg(t, marker); len(got) > 0 {
		t.Fatalf("child processes left running: %v", got)
	}
	if !strings.Contains(out.String(), "Interrupted.") {
		t.Errorf("output lacks the interruption notice:\n%s", out.String())
	}
	checkTemp()
}

// A directory whose demo and janitor were both killed is removed by the
// next run; a live demo's, a starting one's and anything else are kept.
func TestSweepStaleRemovesOnlyDeadDemosDirectories(t *testing.T) {
	parent := t.TempDir()
	dead := exec.Command(lookPath(t, "true"))
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	mk := func(name, owner string) string {
		dir := filepath.Join(parent, name)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if owner != "" {
			if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(owner+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	stale := mk(dirPrefix+"stale", strconv.Itoa(dead.Process.Pid))
	live := mk(dirPrefix+"live", strconv.Itoa(os.Getpid()))
	starting := mk(dirPrefix+"starting", "")
	other := mk("something-else", strconv.Itoa(dead.Process.Pid))

	got := sweepStale(parent)
	if !slices.Equal(got, []string{stale}) {
		t.Errorf("removed %v, want only %s", got, stale)
	}
	for _, keep := range []string{live, starting, other} {
		if _, err := os.Stat(keep); err != nil {
			t.Errorf("%s: %v", keep, err)
		}
	}
}

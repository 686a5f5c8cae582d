package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sys/unix"

	"github.com/leader-elector/leader-elector/pkg/history"
)

// OpsResult measures the planned operations of issue 16 on etcd, with the
// sidecar as real processes.
type OpsResult struct {
	TTL time.Duration
	// Rollouts counts leadership changes in simulated rolling updates of 3
	// replicas, without and with --generation, for each stop order.
	Rollouts []RolloutResult
	// Switchover: POST /resign?to=<last in line> → the target's /watch
	// says it leads.
	Switchover Summary
	// Restart: SIGKILL of the leader's sidecar, restarted at once with the
	// same --incarnation-file → the follower's /watch says it leads; the
	// same from the restarted process's exec (its start-up included); and
	// the restarted process's start-up alone (exec → listening).
	RestartFromKill Summary
	RestartFromExec Summary
	RestartStartup  Summary
}

// RolloutResult is one stop order's leadership changes.
type RolloutResult struct {
	Order         string // e.g. "leader first"
	Without, With int
}

// rolloutOrders are the stop orders of the old pods, by their place in
// line when the rollout starts (0 leads). Kubernetes stops the youngest
// old pod first; where the leader falls in that order depends on history.
var rolloutOrders = []struct {
	name    string
	victims [3]int
}{
	{"leader first, then the next in line", [3]int{0, 1, 2}},
	{"leader second", [3]int{2, 0, 1}},
	{"leader last", [3]int{2, 1, 0}},
}

// etcdElectionPrefix is the sidecar's default --etcd-prefix.
const etcdElectionPrefix = "/leader-elector/"

func measureOperations(ctx context.Context, sidecar, etcdURL string, cli *clientv3.Client, ttl time.Duration, trials int, tmp string) (*OpsResult, error) {
	res := &OpsResult{TTL: ttl}
	// queued waits until an election has n candidate keys: a sidecar that
	// sees the leader may not have created its own key yet.
	queued := func(election string, n int64) error {
		return etcdQueued(cli, etcdElectionPrefix, n)(ctx, election)
	}
	base := func(election string) []string {
		return []string{"--backend", "etcd", "--etcd-endpoints", etcdURL, "--ttl", ttl.String(), "--election", election}
	}
	for i, o := range rolloutOrders {
		r := RolloutResult{Order: o.name}
		for _, gen := range []bool{false, true} {
			n, err := simulateRollout(ctx, sidecar, fmt.Sprintf("rollout-%d-%v", i, gen), base, queued, gen, o.victims, tmp)
			if err != nil {
				return nil, fmt.Errorf("rollout (%s, generations %v): %w", o.name, gen, err)
			}
			if gen {
				r.With = n
			} else {
				r.Without = n
			}
		}
		res.Rollouts = append(res.Rollouts, r)
	}
	var sw, fromKill, fromExec, startup []time.Duration
	for i := range trials {
		d, err := switchoverTrial(ctx, sidecar, fmt.Sprintf("switchover-%d", i), base, queued, tmp)
		if err != nil {
			return nil, fmt.Errorf("switchover trial %d: %w", i, err)
		}
		sw = append(sw, d)
		k, e, s, err := restartTrial(ctx, sidecar, fmt.Sprintf("restart-%d", i), base, queued, tmp, i)
		if err != nil {
			return nil, fmt.Errorf("restart trial %d: %w", i, err)
		}
		fromKill, fromExec, startup = append(fromKill, k), append(fromExec, e), append(startup, s)
	}
	var err error
	if res.Switchover, err = Summarize(sw); err != nil {
		return nil, err
	}
	if res.RestartFromKill, err = Summarize(fromKill); err != nil {
		return nil, err
	}
	if res.RestartFromExec, err = Summarize(fromExec); err != nil {
		return nil, err
	}
	if res.RestartStartup, err = Summarize(startup); err != nil {
		return nil, err
	}
	return res, nil
}

// waitFor waits on ch for at most d.
func waitFor(ctx context.Context, ch <-chan struct{}, d time.Duration, what string) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
		return nil
	case <-t.C:
		return fmt.Errorf("timed out after %v waiting for %s", d, what)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// simulateRollout runs 3 old sidecars, then three times: start a new one,
// wait until its /status is ready (the chart's readiness), SIGTERM the old
// one victims names. It returns the leadership changes in the histories.
func simulateRollout(ctx context.Context, bin, election string, base func(string) []string, queued func(string, int64) error,
	generations bool, victims [3]int, tmp string) (int, error) {
	args := base(election)
	gen := func(g int) []string {
		if !generations {
			return nil
		}
		return []string{"--generation", strconv.Itoa(g)}
	}
	var all, old []*sidecarProc
	var files []string
	defer func() {
		for _, p := range all {
			p.stop()
		}
	}()
	start := func(id string, g int) (*sidecarProc, *contender, error) {
		hist := filepath.Join(tmp, fmt.Sprintf("%s-%s-%d.jsonl", args[len(args)-1], id, time.Now().UnixNano()))
		c := newContender(id)
		p, err := startSidecar(ctx, bin, id, append(append([]string{"--history-file", hist}, args...), gen(g)...), c)
		if err != nil {
			return nil, nil, err
		}
		all, files = append(all, p), append(files, hist)
		return p, c, nil
	}
	for i := range 3 {
		p, c, err := start(fmt.Sprintf("old-%d", i), 1)
		if err != nil {
			return 0, err
		}
		ch, what := c.waiting, "following"
		if i == 0 {
			ch, what = c.led, "leading"
		}
		if err := waitFor(ctx, ch, time.Minute, what); err != nil {
			return 0, err
		}
		if err := queued(election, int64(i+1)); err != nil {
			return 0, err
		}
		old = append(old, p)
	}
	for step, v := range victims {
		n, _, err := start(fmt.Sprintf("new-%d", step), 2)
		if err != nil {
			return 0, err
		}
		if err := waitUntil(ctx, 2*time.Millisecond, func() bool {
			st, err := getStatus(ctx, n.URL)
			return err == nil && st.Ready
		}); err != nil {
			return 0, err
		}
		_ = old[v].signal(syscall.SIGTERM)
		if _, err := old[v].wait(time.Minute); err != nil {
			return 0, err
		}
	}
	// Wait until a new pod leads, then stop everything and count terms.
	if err := waitUntil(ctx, 5*time.Millisecond, func() bool {
		for _, p := range all[3:] {
			if st, err := getStatus(ctx, p.URL); err == nil && st.IsLeader {
				return true
			}
		}
		return false
	}); err != nil {
		return 0, err
	}
	// Stopping the rest hands leadership on among the new pods: count only
	// the terms that began before now.
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, err
	}
	cutoff := ts.Nano()
	for _, p := range all {
		p.stop()
	}
	terms := 0
	for _, f := range files {
		h, err := readHistory(f)
		if err != nil {
			return 0, err
		}
		for _, iv := range history.Intervals(h) {
			if iv.Start <= cutoff {
				terms++
			}
		}
	}
	return terms - 1, nil
}

func readHistory(path string) ([]history.Entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return history.Read(f)
}

// getStatus reads GET /status.
func getStatus(ctx context.Context, url string) (sidecarStatus, error) {
	var st sidecarStatus
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/status", nil)
	if err != nil {
		return st, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// switchoverTrial starts a leader and two followers, asks the leader over
// its control socket to hand over to the last in line, and returns the
// time until that one's /watch says it leads.
func switchoverTrial(ctx context.Context, bin, election string, base func(string) []string, queued func(string, int64) error,
	tmp string) (time.Duration, error) {
	args := base(election)
	dir, err := os.MkdirTemp(tmp, "sw")
	if err != nil {
		return 0, err
	}
	var ps []*sidecarProc
	var cs []*contender
	defer func() {
		for _, p := range ps {
			p.stop()
		}
	}()
	for i := range 3 {
		id := fmt.Sprintf("c%d", i)
		c := newContender(id)
		p, err := startSidecar(ctx, bin, id, append([]string{"--control-socket", filepath.Join(dir, id+".sock")}, args...), c)
		if err != nil {
			return 0, err
		}
		ps, cs = append(ps, p), append(cs, c)
		ch, what := c.waiting, "following"
		if i == 0 {
			ch, what = c.led, "leading"
		}
		if err := waitFor(ctx, ch, time.Minute, what); err != nil {
			return 0, err
		}
	}
	if err := queued(election, 3); err != nil {
		return 0, err
	}
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", filepath.Join(dir, "c0.sock"))
	}}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://localhost/resign?to=c2", nil)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("POST /resign?to=c2 answered %d", resp.StatusCode)
	}
	if err := waitFor(ctx, cs[2].led, time.Minute, "c2 to lead"); err != nil {
		return 0, err
	}
	select {
	case <-cs[1].led:
		return 0, fmt.Errorf("c1 led during a switchover to c2")
	default:
	}
	return cs[2].ledAt.Sub(start), nil
}

// restartTrial starts a leader and a follower, each with its own
// incarnation file, SIGKILLs the leader and starts it again at once, and
// returns the time until the follower's /watch says it leads, from the
// kill and from the restarted process's exec, and that process's start-up
// (exec → listening).
func restartTrial(ctx context.Context, bin, election string, base func(string) []string, queued func(string, int64) error,
	tmp string, n int) (fromKill, fromExec, startup time.Duration, err error) {
	args := base(election)
	file := filepath.Join(tmp, fmt.Sprintf("incarnation-%d", n))
	withFile := append([]string{"--incarnation-file", file, "--pod-uid", "bench"}, args...)
	leader := newContender("a")
	a, err := startSidecar(ctx, bin, "a", withFile, leader)
	if err != nil {
		return 0, 0, 0, err
	}
	defer a.stop()
	if err := waitFor(ctx, leader.led, time.Minute, "a to lead"); err != nil {
		return 0, 0, 0, err
	}
	follower := newContender("b")
	b, err := startSidecar(ctx, bin, "b", args, follower)
	if err != nil {
		return 0, 0, 0, err
	}
	defer b.stop()
	if err := waitFor(ctx, follower.waiting, time.Minute, "b to follow"); err != nil {
		return 0, 0, 0, err
	}
	if err := queued(election, 2); err != nil {
		return 0, 0, 0, err
	}
	killed := time.Now()
	_ = a.signal(syscall.SIGKILL)
	if _, err := a.wait(time.Minute); err != nil {
		return 0, 0, 0, err
	}
	exec := time.Now()
	a2, err := startSidecar(ctx, bin, "a", withFile, nil)
	if err != nil {
		return 0, 0, 0, err
	}
	listening := time.Now()
	defer a2.stop()
	if err := waitFor(ctx, follower.led, time.Minute, "b to lead"); err != nil {
		return 0, 0, 0, err
	}
	return follower.ledAt.Sub(killed), follower.ledAt.Sub(exec), listening.Sub(exec), nil
}

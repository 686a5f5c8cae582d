package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sys/unix"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/leader-elector/leader-elector/pkg/election/lease"
	"github.com/leader-elector/leader-elector/pkg/history"
)

// OpsResult measures the planned operations of issue 16 on one backend,
// with the sidecar as real processes.
type OpsResult struct {
	Backend string // as the report names it, e.g. "etcd"
	TTL     time.Duration
	// Rollouts counts leadership changes in simulated rolling updates of 3
	// replicas, without and with --generation, for each stop order.
	Rollouts []RolloutResult
	// Switchover: POST /resign?to=<last in line> → the target's /watch
	// says it leads.
	Switchover Summary
	// Restart: SIGKILL of the leader's sidecar, restarted at once with the
	// same --incarnation-file → a new leader's /watch says it leads; the
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

// etcdElectionPrefix is the sidecar's default --etcd-prefix followed by the
// namespace of a sidecar that runs outside a pod ("default"), to which the
// election name is appended.
const etcdElectionPrefix = "/leader-elector/default:"

// opsBackend is a backend the planned operations are measured on. Only the
// flags and the wait for "every candidate is in line" differ by backend.
type opsBackend struct {
	Name string
	// args are the flags that select the backend, its servers and the TTL.
	args []string
	// inLine waits until the n candidates ps of election are in line: the
	// leader, and n-1 waiting candidates a handover can reach.
	inLine func(ctx context.Context, election string, n int64, ps []*sidecarProc) error
}

// etcdOps is etcd: a candidate is in line once its key exists (a sidecar
// that sees the leader may not have created its own key yet).
func etcdOps(etcdURL string, cli *clientv3.Client, ttl time.Duration) opsBackend {
	return opsBackend{
		Name: "etcd",
		args: []string{"--backend", "etcd", "--etcd-endpoints", etcdURL, "--ttl", ttl.String()},
		inLine: func(ctx context.Context, election string, n int64, _ []*sidecarProc) error {
			return etcdQueued(cli, etcdElectionPrefix, n)(ctx, election)
		},
	}
}

// The other backends' lines are read from their servers too, by the names
// their packages document, since a sidecar's /status reads ready before its
// candidacy is in line when generations are off.

// leaseOps is the Kubernetes Lease backend: a waiting candidate is in line
// once the election's line object (the Lease <election>-candidates) has
// its entry, an annotation whose JSON names its identity.
func leaseOps(args []string, client kubernetes.Interface, namespace string) opsBackend {
	return opsBackend{Name: "Kubernetes Lease", args: args, inLine: func(ctx context.Context, election string, n int64, ps []*sidecarProc) error {
		return lineHolds(ctx, election, n, ps, func() (map[string]bool, error) {
			l, err := client.CoordinationV1().Leases(namespace).Get(ctx, election+lease.LineSuffix, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			ids := map[string]bool{}
			for k, v := range l.Annotations {
				var e struct {
					ID string `json:"id"`
				}
				if strings.HasPrefix(k, lease.CandidateKeyPrefix) && json.Unmarshal([]byte(v), &e) == nil {
					ids[e.ID] = true
				}
			}
			return ids, nil
		})
	}}
}

// redisOps is the Redis backend (one master): a waiting candidate is in
// line once the election's line hash (<key>:line) has its entry, whose
// value is "<seq> <expires> <generation> <identity>".
func redisOps(args []string, c *redis.Client, keyPrefix string) opsBackend {
	return opsBackend{Name: "Redis", args: args, inLine: func(ctx context.Context, election string, n int64, ps []*sidecarProc) error {
		return lineHolds(ctx, election, n, ps, func() (map[string]bool, error) {
			line, err := c.HGetAll(ctx, keyPrefix+election+":line").Result()
			if err != nil {
				return nil, err
			}
			ids := map[string]bool{}
			for field, v := range line {
				if f := strings.Fields(v); !strings.HasPrefix(field, "#") && len(f) == 4 {
					ids[f[3]] = true
				}
			}
			return ids, nil
		})
	}}
}

// lineHolds waits until the n candidates ps read ready with one leader and
// the others waiting behind it, and line (the identities the backend lists
// as waiting) lists every one that waits.
func lineHolds(ctx context.Context, election string, n int64, ps []*sidecarProc, line func() (map[string]bool, error)) error {
	waiting, err := statusInLine(ctx, election, n, ps)
	if err != nil {
		return err
	}
	var last map[string]bool
	err = waitUntil(ctx, 2*time.Millisecond, func() bool {
		ids, err := line()
		if err != nil {
			return false
		}
		last = ids
		for _, id := range waiting {
			if !ids[id] {
				return false
			}
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("%s: the line lists %v, want %v: %w", election, last, waiting, err)
	}
	return nil
}

// statusInLine waits until each of ps reads ready, one leads and the others
// name it and wait: "following" (etcd, Redis) or "campaigning" (a Lease
// candidate in line keeps campaigning for the Lease). It returns the
// identities of those that wait.
func statusInLine(ctx context.Context, election string, n int64, ps []*sidecarProc) ([]string, error) {
	if int64(len(ps)) != n {
		return nil, fmt.Errorf("%s: %d processes for %d candidates", election, len(ps), n)
	}
	var last []sidecarStatus
	err := waitUntil(ctx, 2*time.Millisecond, func() bool {
		last = last[:0]
		leader := ""
		for _, p := range ps {
			st, err := getStatus(ctx, p.URL)
			if err != nil || !st.Ready {
				return false
			}
			last = append(last, st)
			if st.IsLeader {
				if leader != "" {
					return false
				}
				leader = st.Identity
			}
		}
		for _, st := range last {
			waiting := st.State == "following" || st.State == "campaigning"
			if !st.IsLeader && (!waiting || st.Name != leader) {
				return false
			}
		}
		return leader != ""
	})
	if err != nil {
		return nil, fmt.Errorf("%s: candidates not in line (last /status %+v): %w", election, last, err)
	}
	var waiting []string
	for _, st := range last {
		if !st.IsLeader {
			waiting = append(waiting, st.Identity)
		}
	}
	return waiting, nil
}

// supportsSwitchover starts one sidecar of the backend and reads whether its
// /status says "switchover": true, the backends the operations are
// measured on.
func supportsSwitchover(ctx context.Context, bin string, be opsBackend) (bool, error) {
	p, err := startSidecar(ctx, bin, "probe", append(append([]string{}, be.args...), "--election", "switchover-probe"), nil)
	if err != nil {
		return false, err
	}
	defer p.stop()
	st, err := getStatus(ctx, p.URL)
	if err != nil {
		return false, err
	}
	return st.Switchover, nil
}

func measureOperations(ctx context.Context, sidecar string, be opsBackend, ttl time.Duration, trials int, tmp string) (*OpsResult, error) {
	res := &OpsResult{Backend: be.Name, TTL: ttl}
	for i, o := range rolloutOrders {
		r := RolloutResult{Order: o.name}
		for _, gen := range []bool{false, true} {
			n, err := simulateRollout(ctx, sidecar, fmt.Sprintf("rollout-%d-%v", i, gen), be, gen, o.victims, tmp)
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
		d, err := switchoverTrial(ctx, sidecar, fmt.Sprintf("switchover-%d", i), be, tmp)
		if err != nil {
			return nil, fmt.Errorf("switchover trial %d: %w", i, err)
		}
		sw = append(sw, d)
		k, e, s, err := restartTrial(ctx, sidecar, fmt.Sprintf("restart-%d", i), be, tmp, i)
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
func simulateRollout(ctx context.Context, bin, election string, be opsBackend, generations bool, victims [3]int, tmp string) (int, error) {
	args := append(append([]string{}, be.args...), "--election", election)
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
		old = append(old, p)
		if err := be.inLine(ctx, election, int64(i+1), old); err != nil {
			return 0, err
		}
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
func switchoverTrial(ctx context.Context, bin, election string, be opsBackend, tmp string) (time.Duration, error) {
	args := append(append([]string{}, be.args...), "--election", election)
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
	if err := be.inLine(ctx, election, 3, ps); err != nil {
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
// returns the time until a new leader's /watch says it leads (the
// follower's, or the restarted process's where waiters keep no order),
// from the kill and from the restarted process's exec, and that process's
// start-up (exec → listening).
func restartTrial(ctx context.Context, bin, election string, be opsBackend, tmp string, n int) (fromKill, fromExec, startup time.Duration, err error) {
	args := append(append([]string{}, be.args...), "--election", election)
	file := filepath.Join(tmp, fmt.Sprintf("incarnation-%s-%d", strings.ReplaceAll(be.Name, " ", "-"), n))
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
	if err := be.inLine(ctx, election, 2, []*sidecarProc{a, b}); err != nil {
		return 0, 0, 0, err
	}
	killed := time.Now()
	_ = a.signal(syscall.SIGKILL)
	if _, err := a.wait(time.Minute); err != nil {
		return 0, 0, 0, err
	}
	exec := time.Now()
	restarted := newContender("a")
	a2, err := startSidecar(ctx, bin, "a", withFile, restarted)
	if err != nil {
		return 0, 0, 0, err
	}
	listening := time.Now()
	defer a2.stop()
	// The follower is first in line on etcd; on a backend that keeps no
	// order among waiters (Redis, a Lease) the restarted process may win
	// the released lock itself. Either is the new leader.
	t := time.NewTimer(time.Minute)
	defer t.Stop()
	var ledAt time.Time
	select {
	case <-follower.led:
		ledAt = follower.ledAt
	case <-restarted.led:
		ledAt = restarted.ledAt
	case <-t.C:
		return 0, 0, 0, errors.New("timed out after 1m0s waiting for b or the restarted a to lead")
	case <-ctx.Done():
		return 0, 0, 0, ctx.Err()
	}
	return ledAt.Sub(killed), ledAt.Sub(exec), listening.Sub(exec), nil
}

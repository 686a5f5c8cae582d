package chaos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/leader-elector/leader-elector/internal/testutil/etcdproc"
	"github.com/leader-elector/leader-elector/internal/testutil/kubetest"
	"github.com/leader-elector/leader-elector/internal/testutil/redistest"
	"github.com/leader-elector/leader-elector/internal/testutil/sidecartest"
	"github.com/leader-elector/leader-elector/internal/testutil/tcpproxy"
	"github.com/leader-elector/leader-elector/pkg/election"
	"github.com/leader-elector/leader-elector/pkg/election/etcd"
)

// Timing of a trial.
const (
	// wakeGrace bounds how long a continued process may take to record the
	// step-down its passed deadline requires (race-enabled binary on a
	// loaded machine).
	wakeGrace = time.Second
	// settleTimeout is how long the runner waits for an agreed leader after
	// the heal before it gives up; the bound it checks is much shorter.
	settleTimeout = 30 * time.Second
	// setupTimeout bounds waiting for the first leader and other set-up steps.
	setupTimeout = 30 * time.Second
)

// Outcome is one trial's plan, record and verdict.
type Outcome struct {
	Plan   Plan
	Record *Record
	Result Result
	// FailureDir holds the histories and timeline of a failed trial.
	FailureDir string
}

// slot is one candidate, as one pod: its identity, its proxies to the
// backend, and the processes that ran as it (a killed sidecar is restarted
// in the same slot, as the kubelet restarts a container in its pod).
type slot struct {
	id string
	// pod names the pod (its Pod object in gate mode, its incarnation file,
	// --pod-uid and control socket); it equals id except for a twin (ops.go).
	pod  string
	gen  int64 // --generation
	args []string
	// control reaches the control socket of the sidecar's current process.
	control  *http.Client
	socket   string
	proxies  []*tcpproxy.Proxy
	procs    []*sidecartest.Process
	client   *client
	killed   bool
	paused   bool
	pausedAt int64
	// retired: the pod was stopped for good (a rollout replaced it, a twin
	// went away); it is no candidate any more, but its runs are checked.
	retired bool
}

func (s *slot) proc() *sidecartest.Process { return s.procs[len(s.procs)-1] }
func (s *slot) run() string {
	return Run{Identity: s.id, Pod: s.pod, Instance: len(s.procs) - 1}.Name()
}

type trial struct {
	t       testing.TB
	bin     string
	plan    Plan
	ttl     time.Duration
	cluster *etcdproc.Cluster
	redis   []*redistest.Server
	kube    *rest.Config // the API server (envtest), as an administrator
	kubeNS  string       // the namespace of the Lease and the Pod objects
	// kubeClient is a clientset for kube.
	kubeClient kubernetes.Interface
	slots      []*slot
	reg        *Register
	rec        *Record

	raftLeaderStopped bool
	// degraded is the current round's RoundRecord.Degraded.
	degraded map[string]bool
	// redisHeals undo Redis faults still in place (see redis.go).
	redisHeals []func()

	// targets are the backend's addresses and base the sidecars' flags up
	// to the last one, which names the targets (newSlot).
	targets, base []string
	ctlDir        string // the control sockets' folder
	incDir        string // the pods' "emptyDir"s for --incarnation-file
	retired       []*slot
	generation    int64 // the workload's current --generation (rollouts raise it)
	roundFaults   int   // how many faults the current round has
	gate          *gateWatch
	// clientCtx, clients and hc run the slots' application clients.
	clientCtx context.Context
	clients   *sync.WaitGroup
	hc        *http.Client
}

// RunTrial runs plan with three sidecars built as bin and a lease TTL of
// ttl, checks what they recorded, and on any violation writes the
// histories and a timeline under failureRoot (chaos-failure-<seed>) and
// fails t. With keep it writes them for a trial that passed too.
func RunTrial(t testing.TB, bin string, plan Plan, ttl time.Duration, failureRoot string, keep bool) Outcome {
	t.Helper()
	tr := &trial{t: t, bin: bin, plan: plan, ttl: ttl, reg: &Register{}, generation: 1, incDir: t.TempDir()}
	tr.rec = &Record{
		Seed: plan.Seed, Backend: plan.Backend, TTL: ttl,
		Validity:  time.Duration(float64(ttl)*(1-election.DefaultDrift)) - election.DefaultMargin,
		WakeGrace: wakeGrace,
	}
	ctx, stopClients := context.WithCancel(context.Background())
	hc := &http.Client{Timeout: 500 * time.Millisecond, Transport: &http.Transport{}}
	var wg sync.WaitGroup
	tr.clientCtx, tr.clients, tr.hc = ctx, &wg, hc
	tr.setUp()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			stopClients()
			wg.Wait()
			hc.CloseIdleConnections()
		}
	}
	t.Cleanup(stop)

	leader, st, ok := tr.waitAgreed(setupTimeout, nil)
	if !ok {
		t.Fatalf("%v: the sidecars never agreed on a first leader", plan)
	}
	tr.waitWrite(st.FencingToken)
	done := true
	for i, round := range plan.Rounds {
		if leader, st, done = tr.round(i, round, leader); !done {
			break // no agreed leader: the checker reports it
		}
	}
	if !done {
		leader = nil
	}
	tr.settleGate(leader)
	stop()
	tr.rec.End = monoNow()
	tr.collect()

	out := Outcome{Plan: plan, Record: tr.rec, Result: Check(tr.rec)}
	if out.Result.Passed() && keep {
		dir, err := Dump(failureRoot, plan, tr.rec, out.Result, tr.logs())
		if err != nil {
			t.Errorf("write the trial's evidence: %v", err)
		}
		out.FailureDir = dir
	}
	if !out.Result.Passed() {
		dir, err := Dump(failureRoot, plan, tr.rec, out.Result, tr.logs())
		if err != nil {
			t.Errorf("write failure report: %v", err)
		}
		out.FailureDir = dir
		t.Errorf("%v: %d violation(s); histories and timeline in %s\n  %s\nreplay: %s",
			plan, len(out.Result.Violations), dir, strings.Join(out.Result.Violations, "\n  "), ReplayCommand(plan))
	}
	return out
}

// ReplayCommand is the command that runs plan again.
func ReplayCommand(p Plan) string {
	return fmt.Sprintf("make chaos TRIALS=1 CHAOS_SEED=%d CHAOS_ROUNDS=%d CHAOS_HANDOVERS=%d",
		p.Seed, p.Shape.Rounds, p.Shape.Handovers)
}

// round runs one round against leader, the agreed leader of the moment:
// its faults, the heal, the wait for one agreed leader, the handovers. It
// returns the agreed leader at its end, and false when there was none.
func (tr *trial) round(i int, round Round, leader *slot) (*slot, sidecartest.Status, bool) {
	tr.event("round", "all", fmt.Sprint(i))
	tr.roundFaults = len(round.Faults)
	raftBefore := tr.raftLeader()
	tr.raftLeaderStopped = false
	rr := RoundRecord{Degraded: map[string]bool{}}
	tr.degraded = rr.Degraded
	tr.inject(round.Faults, leader)
	tr.healAll()
	rr.Heal = monoNow()
	healed := time.Now()
	leader, st, ok := tr.waitAgreed(settleTimeout, nil)
	rr.Settled = -1
	if ok {
		rr.Settled = time.Since(healed)
		tr.waitWrite(st.FencingToken)
	}
	if tr.cluster != nil {
		rr.RaftLeaderChanged = tr.raftLeaderStopped || tr.raftLeader() != raftBefore
	}
	rr.SettleBound = tr.ttl + time.Second
	if rr.RaftLeaderChanged {
		rr.SettleBound = 2*tr.ttl + time.Second
	}
	if tr.plan.Backend == BackendEtcd {
		// A successor waits out a predecessor whose lease ended (etcd can
		// revoke one early; see etcd.Backend's waitOut).
		rr.SettleBound += tr.ttl
	}
	var extra time.Duration
	for _, f := range round.Faults {
		extra = max(extra, nemeses()[f.Kind].settleExtra)
	}
	rr.SettleBound += extra
	for _, h := range round.Handovers {
		if !ok {
			break
		}
		var hr HandoverRecord
		leader, st, hr, ok = tr.handover(h, leader, st)
		rr.Handovers = append(rr.Handovers, hr)
	}
	tr.rec.Rounds = append(tr.rec.Rounds, rr)
	return leader, st, ok
}

func (tr *trial) event(action, target, detail string) {
	tr.rec.Events = append(tr.rec.Events, Event{Mono: monoNow(), Action: action, Target: target, Detail: detail})
}

// setUp starts the backend, a proxy per sidecar and backend server, and
// the sidecars.
func (tr *trial) setUp() {
	t := tr.t
	ttlFlag := fmt.Sprintf("%ds", int(tr.ttl/time.Second))
	switch tr.plan.Backend {
	case BackendEtcd:
		tr.cluster = etcdproc.Start(t, 3)
		for _, u := range tr.cluster.ClientURLs() {
			tr.targets = append(tr.targets, strings.TrimPrefix(u, "http://"))
		}
		tr.base = []string{"--backend", "etcd", "--election", "chaos", "--ttl", ttlFlag, "--etcd-dial-timeout", "1s", "--etcd-endpoints"}
	case BackendRedis, BackendRedlock:
		n := 1
		if tr.plan.Backend == BackendRedlock {
			n = 3
		}
		tr.redis = redistest.StartN(t, n)
		tr.targets = redistest.Addrs(tr.redis)
		tr.base = []string{"--backend", "redis", "--election", "chaos", "--ttl", ttlFlag, "--redis-addr"}
	case BackendKubernetes:
		tr.startKube()
		u, err := url.Parse(tr.kube.Host)
		if err != nil {
			t.Fatal(err)
		}
		tr.targets = []string{u.Host}
		tr.base = []string{"--backend", "kubernetes", "--election", "chaos", "--ttl", ttlFlag, "--lease-namespace", tr.kubeNS, "--kubeconfig"}
	default:
		t.Fatalf("unknown backend %q", tr.plan.Backend)
	}
	if tr.plan.Gate() {
		tr.startGate()
		tr.rec.GateMode = true
	}
	// A short directory: a Unix socket's path has at most 107 bytes.
	ctlDir, err := os.MkdirTemp("", "chaos")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(ctlDir) })
	tr.ctlDir = ctlDir
	for i, id := range []string{"a", "b", "c"} {
		tr.slots = append(tr.slots, tr.newSlot(i, id, id, tr.generation))
	}
}

// newSlot starts a candidate as pod pod with identity id: its proxies to
// the backend (the i-th one's member only, in the one-member topology),
// its sidecar and its application client. Every sidecar runs with its
// pod's --incarnation-file and --pod-uid, as the chart runs it, and with
// --generation gen.
func (tr *trial) newSlot(i int, id, pod string, gen int64) *slot {
	t := tr.t
	s := &slot{id: id, pod: pod, gen: gen}
	mine := tr.targets
	if tr.plan.Backend == BackendEtcd && tr.plan.OneMember {
		mine = tr.targets[i%len(tr.targets) : i%len(tr.targets)+1]
	}
	var addrs []string
	for _, target := range mine {
		p := tcpproxy.Start(t, target)
		s.proxies = append(s.proxies, p)
		addrs = append(addrs, p.Addr())
	}
	last := strings.Join(addrs, ",")
	if tr.plan.Backend == BackendKubernetes {
		// The API server through this sidecar's proxy; its serving
		// certificate is valid for 127.0.0.1.
		cfg := rest.CopyConfig(tr.kube)
		cfg.Host = "https://" + addrs[0]
		last = kubetest.WriteKubeconfig(t, cfg)
	}
	s.socket = filepath.Join(tr.ctlDir, pod+".sock")
	s.control = unixClient(s.socket)
	t.Cleanup(s.control.CloseIdleConnections)
	s.args = append([]string{"--control-socket", s.socket}, append(slices.Clone(tr.base), last,
		"--incarnation-file", filepath.Join(tr.incDir, pod+".incarnation"), "--pod-uid", "uid-"+pod,
		"--generation", strconv.FormatInt(gen, 10))...)
	if tr.gate != nil {
		s.args = append(s.args, tr.gate.args(tr, pod)...)
	}
	s.procs = append(s.procs, tr.start(s))
	s.client = newClient(s.id, tr.reg, tr.hc)
	s.client.setURL(s.proc().URL)
	tr.clients.Go(func() { s.client.run(tr.clientCtx) })
	return s
}

// waitAgreed polls until exactly one live sidecar claims leadership, every
// other ready one names it with the same token, and want (if not nil)
// accepts the leader's status.
func (tr *trial) waitAgreed(timeout time.Duration, want func(sidecartest.Status) bool) (*slot, sidecartest.Status, bool) {
	deadline := time.Now().Add(timeout)
	for {
		if s, st, ok := tr.agreed(); ok && (want == nil || want(st)) {
			return s, st, true
		}
		if time.Now().After(deadline) {
			return nil, sidecartest.Status{}, false
		}
		tick := time.NewTimer(20 * time.Millisecond)
		<-tick.C
	}
}

func (tr *trial) agreed() (*slot, sidecartest.Status, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var leader *slot
	var ls sidecartest.Status
	var others []sidecartest.Status
	for _, s := range tr.slots {
		if s.killed || s.paused || s.proc().Exited() {
			continue
		}
		st, err := s.proc().Status(ctx)
		if err != nil {
			return nil, ls, false
		}
		if st.IsLeader {
			if leader != nil {
				return nil, ls, false
			}
			leader, ls = s, st
			continue
		}
		others = append(others, st)
	}
	if leader == nil {
		return nil, ls, false
	}
	for _, st := range others {
		if st.Ready && (st.Name != leader.id || st.FencingToken != ls.FencingToken) {
			return nil, ls, false
		}
	}
	return leader, ls, true
}

// waitWrite waits until the register accepted a write with token, so the
// final term is exercised too.
func (tr *trial) waitWrite(token int64) {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, w := range tr.reg.Log() {
			if w.Accepted && w.Token == token {
				return
			}
		}
		tick := time.NewTimer(10 * time.Millisecond)
		<-tick.C
	}
}

func (tr *trial) raftLeader() int {
	if tr.cluster == nil {
		return -1
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	i, err := tr.cluster.RaftLeader(ctx)
	if err != nil {
		tr.t.Fatalf("etcd: %v", err)
	}
	return i
}

// action is one step of the fault schedule.
type action struct {
	at time.Duration
	do func()
}

// targets are the sidecars a round's faults may hit: the leader when the
// round began and the others.
type targets struct {
	leader    *slot
	followers []*slot
	// signalled are the sidecars a signal fault of this round hit already.
	signalled map[*slot]bool
}

// signal picks the target of a signal fault: the leader, or a follower
// when another signal fault of the round has hit the leader already (two
// signal faults never hit one process).
func (at *targets) signal(f Fault) *slot {
	s := at.leader
	if at.signalled[s] {
		s = at.followers[f.Pick%len(at.followers)]
	}
	at.signalled[s] = true
	return s
}

// link picks the target of a fault at one sidecar: the leader or a
// follower as f.AtLeader says.
func (at *targets) link(f Fault) *slot {
	if f.AtLeader {
		return at.leader
	}
	return at.followers[f.Pick%len(at.followers)]
}

// inject runs faults against leader: each starts at its offset and is
// healed when its hold ends.
func (tr *trial) inject(faults []Fault, leader *slot) {
	at := &targets{leader: leader, signalled: map[*slot]bool{}}
	for _, s := range tr.slots {
		if s != leader {
			at.followers = append(at.followers, s)
		}
	}
	table := nemeses()
	starts := startTimes(faults, table)
	var acts []action
	for i, f := range faults {
		n, ok := table[f.Kind]
		if !ok {
			tr.t.Fatalf("unknown fault %q", f.Kind)
		}
		inj, heal := n.resolve(tr, f, at)
		acts = append(acts, action{starts[i], inj}, action{starts[i] + f.Hold, heal})
	}
	slices.SortStableFunc(acts, func(a, b action) int { return cmpInt(int64(a.at), int64(b.at)) })
	start := time.Now()
	for _, a := range acts {
		if d := time.Until(start.Add(a.at)); d > 0 {
			// Holding a fault for its chosen time is the experiment.
			wait(d)
		}
		a.do()
	}
}

// startTimes returns when each of a round's faults is injected: at its
// offset, except that a rollout waits for its new pods' readiness while
// nothing else of the round runs, so one that overlapped a fault refusing
// new pods would wait for a heal that cannot come (seed 20261326:
// redis-deny + rollout); it starts after such faults' heals instead, as a
// real rollout resumes once the fault is fixed.
func startTimes(faults []Fault, table map[Kind]nemesis) []time.Duration {
	var refusedUntil time.Duration
	for _, f := range faults {
		if table[f.Kind].refusesNewPods {
			refusedUntil = max(refusedUntil, f.Offset+f.Hold)
		}
	}
	out := make([]time.Duration, len(faults))
	for i, f := range faults {
		out[i] = f.Offset
		if table[f.Kind].waitsForNewPods {
			out[i] = max(out[i], refusedUntil)
		}
	}
	return out
}

// The resolve functions of the nemeses (see nemeses): each picks its
// target and returns its injection and its heal.

func (tr *trial) killLeader(f Fault, at *targets) (inject, heal func()) {
	s := at.signal(f)
	return func() { tr.kill(s) }, func() { tr.restart(s) }
}

func (tr *trial) pauseLeader(f Fault, at *targets) (inject, heal func()) {
	s := at.signal(f)
	return func() { tr.pause(s, string(f.Kind)) }, func() { tr.resume(s) }
}

// link: blackhole, delay or reset one sidecar's backend traffic.
func (tr *trial) link(f Fault, at *targets) (inject, heal func()) {
	s := at.link(f)
	return func() {
			for _, p := range s.proxies {
				switch f.Kind {
				case Blackhole:
					p.Blackhole()
				case Delay:
					p.Delay(f.Delay)
				case Reset:
					p.Reset()
				}
			}
			detail := ""
			if f.Kind == Delay {
				detail = f.Delay.Round(time.Millisecond).String()
			}
			tr.event(string(f.Kind), s.id, detail)
		}, func() {
			for _, p := range s.proxies {
				p.Pass()
			}
			tr.event("pass", s.id, "")
		}
}

// earlyRevoke cuts the leader off from etcd (its connections blackholed)
// and revokes every candidate's lease through a client of its own, as etcd
// does early after a deposed Raft leader resumes (docs/safety.md): the
// followers' keys go too, so the next to campaign finds nobody ahead. The
// heal lets the leader's traffic through again.
func (tr *trial) earlyRevoke(f Fault, at *targets) (inject, heal func()) {
	s := at.leader
	return func() {
			for _, p := range s.proxies {
				p.Blackhole()
			}
			tr.event(string(f.Kind), s.id, tr.revokeLeases())
		}, func() {
			for _, p := range s.proxies {
				p.Pass()
			}
			tr.event("pass", s.id, "")
		}
}

// revokeLeases revokes the lease of every candidate key of the election,
// and says what it did.
func (tr *trial) revokeLeases() string {
	cli, err := clientv3.New(clientv3.Config{Endpoints: tr.cluster.ClientURLs(), DialTimeout: setupTimeout, Logger: zap.NewNop()})
	if err != nil {
		return err.Error()
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	// Every key of the sidecars' prefix: the election's own lies under it,
	// with or without a namespace (etcd.Options.Namespace).
	resp, err := cli.Get(ctx, etcd.DefaultPrefix, clientv3.WithPrefix())
	if err != nil {
		return err.Error()
	}
	revoked := map[int64]bool{}
	for _, kv := range resp.Kvs {
		if kv.Lease == 0 || revoked[kv.Lease] {
			continue
		}
		if _, err := cli.Revoke(ctx, clientv3.LeaseID(kv.Lease)); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return fmt.Sprintf("revoking %x: %v", kv.Lease, err)
		}
		revoked[kv.Lease] = true
	}
	return fmt.Sprintf("revoked %d leases", len(revoked))
}

// member: stop or hang (SIGSTOP) an etcd member, etcd's Raft leader or
// another one.
func (tr *trial) member(f Fault, _ *targets) (inject, heal func()) {
	var m *etcdproc.Member
	hang := f.Kind == HungMember || f.Kind == HungRaftLeader
	return func() {
			raft := tr.raftLeader()
			if f.Kind == KillRaftLeader || f.Kind == HungRaftLeader {
				m = tr.cluster.Member(raft)
				tr.raftLeaderStopped = true
			} else {
				var cands []int
				for i := range tr.cluster.Len() {
					if i != raft && tr.cluster.Member(i).Running() && !tr.cluster.Member(i).Paused() {
						cands = append(cands, i)
					}
				}
				m = tr.cluster.Member(cands[f.Pick%len(cands)])
			}
			if hang {
				if err := m.Pause(); err != nil {
					tr.t.Fatalf("%v", err)
				}
				tr.event("sigstop-member", m.Name(), string(f.Kind))
				return
			}
			m.Stop()
			tr.event("stop-member", m.Name(), string(f.Kind))
		}, func() {
			if hang {
				tr.resumeMember(m)
				return
			}
			tr.restartMember(m)
		}
}

// stallLog: stop reading a sidecar's stderr once its pipe is full, and cut
// it off from the backend.
func (tr *trial) stallLog(f Fault, at *targets) (inject, heal func()) {
	s := at.link(f)
	var proc *sidecartest.Process
	return func() {
			proc = s.proc()
			proc.StallLog()
			detail := "stderr full"
			if err := proc.FillLog(); err != nil {
				detail = err.Error() // it exited meanwhile (another fault)
			}
			for _, p := range s.proxies {
				p.Blackhole()
			}
			tr.event(string(f.Kind), s.id, detail)
		}, func() {
			for _, p := range s.proxies {
				p.Pass()
			}
			proc.ResumeLog()
			tr.event("resume-log", s.id, "")
		}
}

// history: stall or break a sidecar's history pipe, and cut it off from the
// backend, so it steps down while its history output is stuck or failing.
// A broken history's target that led when the fault began and no longer
// leads that term at the heal wrote its step-down to the failing history,
// so it must show the history as degraded in /status before the heal
// (RoundRecord.Degraded). (Another link fault on the same sidecar in the
// round, a delay, can replace the cut-off; then it may lead on.)
func (tr *trial) history(f Fault, at *targets) (inject, heal func()) {
	s := at.link(f)
	var proc *sidecartest.Process
	led := false
	var token int64
	status := func() (sidecartest.Status, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return proc.Status(ctx)
	}
	return func() {
			proc = s.proc()
			if f.Kind == FailHistory {
				st, err := status()
				led, token = err == nil && st.IsLeader, st.FencingToken
				proc.BreakHistory()
			} else {
				proc.StallHistory()
			}
			for _, p := range s.proxies {
				p.Blackhole()
			}
			tr.event(string(f.Kind), s.run(), fmt.Sprintf("led=%t", led))
		}, func() {
			if f.Kind == FailHistory && led && !proc.Exited() {
				if st, err := status(); err == nil && !(st.IsLeader && st.FencingToken == token) {
					tr.degraded[s.run()] = tr.waitDegraded(proc, "history")
				}
			}
			for _, p := range s.proxies {
				p.Pass()
			}
			proc.ResumeHistory()
			proc.MendHistory()
			tr.event("mend-history", s.run(), "")
		}
}

// waitDegraded reports whether proc's /status names output among its
// degraded outputs within a second (the failed write happens on the
// history's own goroutine, just after the step-down it records).
func (tr *trial) waitDegraded(proc *sidecartest.Process, output string) bool {
	deadline := time.Now().Add(time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		st, err := proc.Status(ctx)
		cancel()
		if err == nil {
			for _, d := range st.Degraded {
				if strings.HasPrefix(d, output+":") {
					return true
				}
			}
		}
		if proc.Exited() || time.Now().After(deadline) {
			return false
		}
		wait(20 * time.Millisecond)
	}
}

func (tr *trial) redisRestart(f Fault, _ *targets) (inject, heal func()) {
	srv := tr.redis[f.Pick%len(tr.redis)]
	return func() {
			srv.Stop()
			tr.event("stop-redis", srv.Addr(), "")
		}, func() {
			tr.restartRedis(srv)
		}
}

// start runs a process for s: its history is a pipe, so the history
// nemeses can hit any process.
func (tr *trial) start(s *slot) *sidecartest.Process {
	return sidecartest.Start(tr.t, tr.bin, sidecartest.Options{ID: s.id, Args: s.args, HistoryPipe: true})
}

// unixClient is an HTTP client for the control socket at path.
func unixClient(path string) *http.Client {
	var d net.Dialer
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return d.DialContext(ctx, "unix", path) },
	}}
}

func (tr *trial) kill(s *slot) {
	if s.killed || s.retired {
		return
	}
	s.client.setURL("")
	s.proc().Signal(syscall.SIGKILL)
	s.proc().Wait(setupTimeout)
	s.killed = true
	if s.paused {
		tr.rec.Pauses = append(tr.rec.Pauses, Pause{Run: s.run(), Stop: s.pausedAt, Cont: monoNow()})
		s.paused = false
		s.client.thaw()
	}
	tr.event("sigkill", s.run(), "")
}

func (tr *trial) restart(s *slot) {
	if !s.killed || s.retired {
		return
	}
	s.procs = append(s.procs, tr.start(s))
	s.killed = false
	s.client.setURL(s.proc().URL)
	tr.event("restart", s.run(), "")
}

// pause freezes the pod: its client stops between a poll and a write,
// then the sidecar is stopped.
func (tr *trial) pause(s *slot, why string) {
	if s.killed || s.paused || s.retired {
		return
	}
	s.client.freeze(time.Second)
	s.proc().Signal(syscall.SIGSTOP)
	s.paused, s.pausedAt = true, monoNow()
	tr.event("sigstop", s.run(), why)
}

func (tr *trial) resume(s *slot) {
	if !s.paused {
		return
	}
	s.proc().Signal(syscall.SIGCONT)
	now := monoNow()
	s.client.thaw()
	tr.rec.Pauses = append(tr.rec.Pauses, Pause{Run: s.run(), Stop: s.pausedAt, Cont: now})
	s.paused = false
	tr.rec.Events = append(tr.rec.Events, Event{Mono: now, Action: "sigcont", Target: s.run()})
}

// resumeMember continues a hung etcd member (SIGCONT).
func (tr *trial) resumeMember(m *etcdproc.Member) {
	if m == nil || !m.Paused() {
		return
	}
	if err := m.Resume(); err != nil {
		tr.t.Fatalf("%v", err)
	}
	tr.event("sigcont-member", m.Name(), "")
}

func (tr *trial) restartMember(m *etcdproc.Member) {
	if m == nil || m.Running() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if err := m.Restart(ctx); err != nil {
		tr.t.Fatalf("restart %s: %v", m.Name(), err)
	}
	tr.event("restart-member", m.Name(), "")
}

func (tr *trial) restartRedis(srv *redistest.Server) {
	srv.Restart()
	now := monoNow()
	tr.rec.RedisEmpty = append(tr.rec.RedisEmpty, now)
	tr.rec.Events = append(tr.rec.Events, Event{Mono: now, Action: "restart-redis-empty", Target: srv.Addr()})
}

// healAll removes whatever fault is left and restarts killed sidecars, so
// there are always three candidates.
func (tr *trial) healAll() {
	for _, s := range tr.slots {
		for _, p := range s.proxies {
			if p.Mode() != tcpproxy.Pass {
				p.Pass()
			}
		}
		tr.resume(s)
		if p := s.proc(); !p.Exited() {
			p.ResumeHistory()
			p.MendHistory()
		}
	}
	if tr.cluster != nil {
		for i := range tr.cluster.Len() {
			tr.resumeMember(tr.cluster.Member(i))
			tr.restartMember(tr.cluster.Member(i))
		}
	}
	for _, s := range tr.slots {
		tr.restart(s)
	}
	tr.healRedis()
	tr.event("healed", "all", "")
}

// collect reads every process's history into the record.
func (tr *trial) collect() {
	for _, s := range tr.all() {
		for i, p := range s.procs {
			h := p.ReadHistory()
			run := Run{Identity: s.id, Pod: s.pod, Instance: i, History: h, Intervals: p.Intervals(), Exited: p.ExitedAt()}
			for _, k := range p.HistoryBreaks() {
				var g Gap
				if k > 0 && k <= len(h) {
					g.From = h[k-1].Mono
				}
				if k < len(h) {
					g.To = h[k].Mono
				}
				run.Gaps = append(run.Gaps, g)
			}
			tr.rec.Runs = append(tr.rec.Runs, run)
		}
	}
	tr.rec.Writes = tr.reg.Log()
	if tr.gate != nil {
		tr.rec.Gate = tr.gate.record()
	}
	for name, log := range tr.logs() {
		if strings.Contains(log, "WARNING: DATA RACE") {
			tr.rec.Races = append(tr.rec.Races, name)
		}
	}
	slices.Sort(tr.rec.Races)
	slices.SortStableFunc(tr.rec.Events, func(a, b Event) int { return cmpInt(a.Mono, b.Mono) })
}

func (tr *trial) logs() map[string]string {
	out := map[string]string{}
	for _, s := range tr.all() {
		for i, p := range s.procs {
			out[Run{Identity: s.id, Pod: s.pod, Instance: i}.Name()] = p.Log()
		}
	}
	return out
}

package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/redis/go-redis/v9"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// Config sets the size of a run.
type Config struct {
	Command string // how the run was started, for the report
	Root    string // repository root (for go build and bin/)
	TTL     time.Duration
	Trials  int // graceful handover trials per system
	// SlowParallel is how many independent elections the polling
	// alternatives (client-go, redsync, redislock) run at once to collect
	// their trials faster. Ours always run one election at a time.
	SlowParallel   int
	CrashTrials    int
	CrashParallel  int
	CostWindow     time.Duration
	ScaleElections int
	ScaleTrials    int
	ScaleTTL       time.Duration
	PublishTrials  int
	OpsTrials      int // switchover and restart trials; 0 skips the operations section
	// OnlyOps measures the planned operations alone (no handover, crash,
	// cost, publish or scale measurements).
	OnlyOps bool
	Logger  *slog.Logger
}

// Latency is one system's latency samples, summarised.
type Latency struct {
	System   string
	Note     string
	Parallel int // elections run at once
	Summary  Summary
}

// Results is everything one run measured.
type Results struct {
	Config     Config
	Started    time.Time
	Took       time.Duration
	Machine    Machine
	BinarySize int64
	Handover   []Latency // ours first
	Crash      []Latency // time from SIGKILL to a new leader
	Publish    *Latency  // nil when the sidecar cannot publish labels
	PublishMsg string    // why publish latency was not measured
	Cost       []CostResult
	Scale      *ScaleResult
	Ops        []*OpsResult // one per backend measured; empty when skipped
	// OpsSkipped names the backends whose operations were not measured,
	// with why (their sidecar reports "switchover": false).
	OpsSkipped []string
}

// Machine describes where the run happened.
type Machine struct {
	CPU    string
	Cores  int
	Memory string
	Kernel string
	Go     string
}

// Run measures everything and returns the results. It fails only when a
// measurement is broken.
func Run(ctx context.Context, cfg Config) (*Results, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// client-go's leader election logs every acquisition through klog.
	klog.SetLogger(logr.Discard())
	// envtest logs through controller-runtime's logger, which complains
	// when none is set.
	ctrllog.SetLogger(logr.Discard())
	res := &Results{Config: cfg, Started: time.Now(), Machine: describeMachine()}
	tmp, err := os.MkdirTemp("", "leader-elector-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	binDir := filepath.Join(cfg.Root, "bin")

	log.Info("building the sidecar")
	sidecar, err := buildSidecar(ctx, cfg.Root, tmp)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(sidecar)
	if err != nil {
		return nil, err
	}
	res.BinarySize = fi.Size()

	log.Info("starting etcd and redis-server")
	etcd, err := startEtcd(ctx, filepath.Join(binDir, "etcd"), tmp)
	if err != nil {
		return nil, err
	}
	defer etcd.close()
	rds, err := startRedis(ctx, tmp)
	if err != nil {
		return nil, err
	}
	defer rds.close()
	etcdCli, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.URL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	defer etcdCli.Close()
	redisCli := redis.NewClient(&redis.Options{Addr: rds.Addr})
	defer redisCli.Close()

	if cfg.OnlyOps {
		return runOnlyOps(ctx, cfg, res, sidecar, binDir, etcd.URL, etcdCli, rds.Addr, redisCli, tmp, log)
	}

	ttlArg := cfg.TTL.String()
	// The sidecars run outside a pod, so their namespace is "default".
	const etcdPrefix, redisPrefix = "/leader-elector/default:", "leader-elector:default/"
	ourEtcd := trialSpec{
		start: sidecarStarter(sidecar, func(string, string) []string {
			return []string{"--backend", "etcd", "--etcd-endpoints", etcd.URL, "--ttl", ttlArg}
		}),
		queued:     etcdQueued(etcdCli, etcdPrefix, 2),
		phase:      cfg.TTL / 3,
		ledTimeout: time.Minute,
	}
	// The sidecar as users run it, for its idle cost.
	ourEtcdDefault := trialSpec{
		start: sidecarStarter(sidecar, func(string, string) []string {
			return []string{"--backend", "etcd", "--etcd-endpoints", etcd.URL}
		}),
		queued:     etcdQueued(etcdCli, etcdPrefix, 2),
		phase:      cfg.TTL / 3,
		ledTimeout: time.Minute,
	}
	ourRedis := trialSpec{
		start: sidecarStarter(sidecar, func(string, string) []string {
			return []string{"--backend", "redis", "--redis-addr", rds.Addr, "--ttl", ttlArg}
		}),
		queued:     redisQueued(redisCli, redisPrefix, 3),
		phase:      cfg.TTL / 3,
		ledTimeout: time.Minute,
	}

	measure := func(system, note, prefix string, spec trialSpec, trials, parallel int, into *[]Latency) error {
		log.Info("measuring", "system", system, "what", prefix, "trials", trials, "parallel", parallel)
		t0 := time.Now()
		samples, err := runParallel(ctx, spec, prefix, trials, parallel)
		if err != nil {
			return fmt.Errorf("%s: %w", system, err)
		}
		s, err := Summarize(samples)
		if err != nil {
			return fmt.Errorf("%s: %w", system, err)
		}
		log.Info("measured", "system", system, "p50", s.P50, "p99", s.P99, "max", s.Max, "took", time.Since(t0).Round(time.Second))
		*into = append(*into, Latency{System: system, Note: note, Parallel: max(1, min(parallel, trials)), Summary: s})
		return nil
	}

	// Graceful handover: ours, one election at a time.
	if err := measure("leader-elector (etcd)", "SIGTERM → /watch of the successor", "handover-etcd", ourEtcd, cfg.Trials, 1, &res.Handover); err != nil {
		return nil, err
	}
	if err := measure("leader-elector (Redis)", "SIGTERM → /watch of the successor", "handover-redis", ourRedis, cfg.Trials, 1, &res.Handover); err != nil {
		return nil, err
	}

	// The Redis libraries.
	ttl := cfg.TTL
	// Each phase spans the waiter's longest poll interval.
	redsyncSpec := trialSpec{start: redsyncStarter(redisCli, ttl), phase: 250 * time.Millisecond, ledTimeout: time.Minute}
	redislockSpec := trialSpec{start: redislockStarter(redisCli, ttl), phase: 100 * time.Millisecond, ledTimeout: time.Minute}
	if err := measure("redsync v4", "Unlock → waiter's Lock returns; retry 50–250 ms", "handover-redsync", redsyncSpec, cfg.Trials, cfg.SlowParallel, &res.Handover); err != nil {
		return nil, err
	}
	if err := measure("bsm/redislock", "Release → waiter's Obtain returns; linear retry 100 ms", "handover-redislock", redislockSpec, cfg.Trials, cfg.SlowParallel, &res.Handover); err != nil {
		return nil, err
	}

	// client-go against a real kube-apiserver.
	log.Info("starting the envtest control plane")
	kube, err := startKube(binDir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := kube.close(); err != nil {
			log.Warn("stopping the control plane", "err", err)
		}
	}()
	ns, err := kube.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "bench-"}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create namespace: %w", err)
	}
	var defReqs, matchedReqs atomic.Int64
	matched := matchedTimings(ttl)
	// client-go waits RetryPeriod plus up to 1.2 × RetryPeriod of jitter.
	defSpec := trialSpec{start: clientGoStarter(kube.Config, ns.Name, clientGoDefaults, &defReqs),
		phase: clientGoDefaults.Retry * 22 / 10, ledTimeout: 2 * time.Minute}
	matchedSpec := trialSpec{start: clientGoStarter(kube.Config, ns.Name, matched, &matchedReqs),
		phase: matched.Retry * 22 / 10, ledTimeout: time.Minute}
	if err := measure("client-go leaderelection (defaults)", "15 s / 10 s / 2 s, ReleaseOnCancel; cancel → OnStartedLeading",
		"handover-clientgo-defaults", defSpec, cfg.Trials, cfg.SlowParallel, &res.Handover); err != nil {
		return nil, err
	}
	if err := measure("client-go leaderelection (matched)",
		fmt.Sprintf("%v / %v / %v, ReleaseOnCancel; cancel → OnStartedLeading", matched.Lease, matched.Renew.Round(time.Millisecond), matched.Retry.Round(time.Millisecond)),
		"handover-clientgo-matched", matchedSpec, cfg.Trials, cfg.SlowParallel, &res.Handover); err != nil {
		return nil, err
	}

	// Our sidecar on a Kubernetes Lease, side by side with client-go on the
	// same API server.
	leaseKubeconfig := filepath.Join(tmp, "kubeconfig-lease")
	if err := writeKubeconfig(kube.Config, leaseKubeconfig); err != nil {
		return nil, err
	}
	ourLease := trialSpec{
		start: sidecarStarter(sidecar, func(string, string) []string {
			return []string{"--backend", "kubernetes", "--kubeconfig", leaseKubeconfig, "--lease-namespace", ns.Name, "--ttl", ttlArg}
		}),
		// No server-side queue to check: a follower that names the leader
		// has listed the Lease; the phase covers starting its watch.
		phase:      cfg.TTL / 3,
		ledTimeout: time.Minute,
	}
	if err := measure("leader-elector (Kubernetes Lease)", "SIGTERM → /watch of the successor", "handover-lease", ourLease, cfg.Trials, 1, &res.Handover); err != nil {
		return nil, err
	}

	// Crash failover: ours.
	crashEtcd, crashRedis := ourEtcd, ourRedis
	crashEtcd.crash, crashRedis.crash = true, true
	crashEtcd.ledTimeout, crashRedis.ledTimeout = 3*cfg.TTL+time.Minute, 3*cfg.TTL+time.Minute
	if err := measure("leader-elector (etcd)", "SIGKILL → /watch of the successor", "crash-etcd", crashEtcd, cfg.CrashTrials, cfg.CrashParallel, &res.Crash); err != nil {
		return nil, err
	}
	if err := measure("leader-elector (Redis)", "SIGKILL → /watch of the successor", "crash-redis", crashRedis, cfg.CrashTrials, cfg.CrashParallel, &res.Crash); err != nil {
		return nil, err
	}
	crashLease := ourLease
	crashLease.crash, crashLease.ledTimeout = true, 3*cfg.TTL+time.Minute
	if err := measure("leader-elector (Kubernetes Lease)", "SIGKILL → /watch of the successor", "crash-lease", crashLease, cfg.CrashTrials, cfg.CrashParallel, &res.Crash); err != nil {
		return nil, err
	}

	// Planned operations: rollouts, switchover, sidecar restarts.
	if err := measureAllOperations(ctx, cfg, res, sidecar, opsBackends(cfg, etcd.URL, etcdCli, rds.Addr, redisCli, kube, leaseKubeconfig, ns.Name), tmp, log); err != nil {
		return nil, err
	}

	// Steady-state cost, three candidates each.
	log.Info("measuring steady-state cost", "window", cfg.CostWindow)
	costs := []struct {
		system string
		spec   trialSpec
		queued func(int64) queuedCheck
		count  counter
	}{
		{"leader-elector (etcd)", ourEtcd, func(n int64) queuedCheck { return etcdQueued(etcdCli, etcdPrefix, n) }, etcdCounter(etcd.URL)},
		{defaultTTLSystem, ourEtcdDefault, func(n int64) queuedCheck { return etcdQueued(etcdCli, etcdPrefix, n) }, etcdCounter(etcd.URL)},
		{"leader-elector (Redis)", ourRedis, func(n int64) queuedCheck { return redisQueued(redisCli, redisPrefix, 2*n-1) }, redisCounter(redisCli)},
		{"redsync v4", redsyncSpec, nil, redisCounter(redisCli)},
		{"bsm/redislock", redislockSpec, nil, redisCounter(redisCli)},
		{"client-go leaderelection (defaults)", defSpec, nil, atomicCounter(&defReqs)},
		{"client-go leaderelection (matched)", matchedSpec, nil, atomicCounter(&matchedReqs)},
	}
	for i, c := range costs {
		r, err := measureCost(ctx, c.system, c.spec, c.queued, c.count, fmt.Sprintf("cost-%d", i), 3, cfg.CostWindow)
		if err != nil {
			return nil, fmt.Errorf("cost of %s: %w", c.system, err)
		}
		log.Info("cost", "system", c.system, "requests_per_sec_per_candidate", r.RequestsPerSec)
		res.Cost = append(res.Cost, r)
	}

	// Pod label publishing.
	pub, msg, err := measurePublish(ctx, sidecar, etcd.URL, etcdCli, kube, ns.Name, cfg, log)
	if err != nil {
		return nil, err
	}
	res.Publish, res.PublishMsg = pub, msg

	// Scale.
	if cfg.ScaleElections > 0 {
		log.Info("measuring scale", "elections", cfg.ScaleElections, "ttl", cfg.ScaleTTL)
		sc, err := runScale(ctx, etcd, etcdCli, cfg.ScaleElections, cfg.ScaleTrials, cfg.ScaleTTL, cfg.CostWindow)
		if err != nil {
			return nil, err
		}
		log.Info("scale", "startup", sc.Startup.Round(time.Millisecond), "p99", sc.Handover.P99, "etcd_cpu_per_s", sc.EtcdCPU)
		res.Scale = &sc
	}
	res.Took = time.Since(res.Started)
	return res, nil
}

// opsBackends are the backends whose planned operations are measured, in
// the report's order: etcd (its line is read from etcd's keys), the
// Kubernetes Lease and Redis (their line is read from the sidecars' /status).
func opsBackends(cfg Config, etcdURL string, etcdCli *clientv3.Client, redisAddr string, redisCli *redis.Client,
	kube *kubeServer, leaseKubeconfig, leaseNamespace string) []opsBackend {
	ttl := cfg.TTL.String()
	const redisPrefix = "leader-elector:default/" // outside a pod the namespace is "default"
	return []opsBackend{
		etcdOps(etcdURL, etcdCli, cfg.TTL),
		leaseOps([]string{"--backend", "kubernetes", "--kubeconfig", leaseKubeconfig, "--lease-namespace", leaseNamespace, "--ttl", ttl},
			kube.Client, leaseNamespace),
		redisOps([]string{"--backend", "redis", "--redis-addr", redisAddr, "--ttl", ttl}, redisCli, redisPrefix),
	}
}

// measureAllOperations measures the planned operations on each backend
// whose sidecar reports "switchover": true in /status, and records the
// others as skipped.
func measureAllOperations(ctx context.Context, cfg Config, res *Results, sidecar string, backends []opsBackend, tmp string, log *slog.Logger) error {
	if cfg.OpsTrials <= 0 {
		return nil
	}
	for _, be := range backends {
		ok, err := supportsSwitchover(ctx, sidecar, be)
		if err != nil {
			return fmt.Errorf("operations on %s: %w", be.Name, err)
		}
		if !ok {
			log.Info("planned operations skipped: /status says switchover false", "backend", be.Name)
			res.OpsSkipped = append(res.OpsSkipped, be.Name)
			continue
		}
		log.Info("measuring planned operations", "backend", be.Name, "trials", cfg.OpsTrials)
		ops, err := measureOperations(ctx, sidecar, be, cfg.TTL, cfg.OpsTrials, tmp)
		if err != nil {
			return fmt.Errorf("operations on %s: %w", be.Name, err)
		}
		for _, r := range ops.Rollouts {
			log.Info("rollout", "backend", be.Name, "order", r.Order, "changes_without_generation", r.Without, "changes_with_generation", r.With)
		}
		log.Info("switchover", "backend", be.Name, "p50", ops.Switchover.P50, "p99", ops.Switchover.P99)
		log.Info("restart", "backend", be.Name, "kill_to_leader_p50", ops.RestartFromKill.P50, "exec_to_leader_p50", ops.RestartFromExec.P50,
			"startup_p50", ops.RestartStartup.P50)
		res.Ops = append(res.Ops, ops)
	}
	return nil
}

// runOnlyOps starts the control plane for the Lease backend and measures
// the planned operations alone (Config.OnlyOps).
func runOnlyOps(ctx context.Context, cfg Config, res *Results, sidecar, binDir, etcdURL string, etcdCli *clientv3.Client, redisAddr string,
	redisCli *redis.Client, tmp string, log *slog.Logger) (*Results, error) {
	log.Info("starting the envtest control plane")
	kube, err := startKube(binDir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := kube.close(); err != nil {
			log.Warn("stopping the control plane", "err", err)
		}
	}()
	ns, err := kube.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "bench-"}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create namespace: %w", err)
	}
	kubeconfig := filepath.Join(tmp, "kubeconfig-lease")
	if err := writeKubeconfig(kube.Config, kubeconfig); err != nil {
		return nil, err
	}
	if err := measureAllOperations(ctx, cfg, res, sidecar, opsBackends(cfg, etcdURL, etcdCli, redisAddr, redisCli, kube, kubeconfig, ns.Name), tmp, log); err != nil {
		return nil, err
	}
	res.Took = time.Since(res.Started)
	return res, nil
}

// describeMachine reads the CPU model, memory and kernel from /proc.
func describeMachine() Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), CPU: "unknown", Memory: "unknown", Kernel: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPU = firstField(string(b), "model name")
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		f := strings.Fields(firstField(string(b), "MemTotal"))
		if len(f) == 2 {
			if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil {
				m.Memory = fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	return m
}

// firstField returns the value of the first "key: value" line with key.
func firstField(text, key string) string {
	for line := range strings.SplitSeq(text, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

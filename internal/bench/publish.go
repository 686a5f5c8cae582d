package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// roleLabel is the sidecar's default role label key.
const roleLabel = "leader-elector.io/role"

// podLabels watches the pods of a namespace and remembers when each pod was
// first seen with the leader role label.
type podLabels struct {
	mu      sync.Mutex
	leading map[string]*labelSeen
}

type labelSeen struct {
	ch chan struct{}
	at time.Time
}

func (p *podLabels) get(name string) *labelSeen {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, ok := p.leading[name]
	if !ok {
		s = &labelSeen{ch: make(chan struct{})}
		p.leading[name] = s
	}
	return s
}

// run watches until ctx ends, resuming from the last resource version when
// the apiserver closes the watch.
func (p *podLabels) run(ctx context.Context, client kubernetes.Interface, ns string, log *slog.Logger) {
	rv := ""
	for ctx.Err() == nil {
		w, err := client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: rv})
		if err != nil {
			log.Warn("watch pods", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		for ev := range w.ResultChan() {
			now := time.Now()
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok || (ev.Type != watch.Added && ev.Type != watch.Modified) {
				continue
			}
			rv = pod.ResourceVersion
			if pod.Labels[roleLabel] == "leader" {
				s := p.get(pod.Name)
				p.mu.Lock()
				if s.at.IsZero() {
					s.at = now
					close(s.ch)
				}
				p.mu.Unlock()
			}
		}
		w.Stop()
	}
}

// writeKubeconfig writes cfg (client certificate or token) as a kubeconfig.
func writeKubeconfig(cfg *rest.Config, path string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["bench"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["bench"] = &clientcmdapi.AuthInfo{Token: cfg.BearerToken, ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	kc.Contexts["bench"] = &clientcmdapi.Context{Cluster: "bench", AuthInfo: "bench"}
	kc.CurrentContext = "bench"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}

// measurePublish times, after each graceful handover on etcd, how long after
// the successor reports is_leader on /watch its pod carries the leader label
// in the apiserver (seen by a watch). It returns a nil Latency and a reason
// when the sidecar binary has no Kubernetes publishing.
func measurePublish(ctx context.Context, sidecar, etcdURL string, etcdCli *clientv3.Client, kube *kubeServer, ns string,
	cfg Config, log *slog.Logger) (*Latency, string, error) {
	if cfg.PublishTrials <= 0 {
		return nil, "not measured in this run", nil
	}
	dir, err := os.MkdirTemp("", "bench-kube-")
	if err != nil {
		return nil, "", err
	}
	defer os.RemoveAll(dir)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(kube.Config, kubeconfig); err != nil {
		return nil, "", err
	}
	labels := &podLabels{leading: map[string]*labelSeen{}}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go labels.run(wctx, kube.Client, ns, log)

	base := sidecarStarter(sidecar, func(_, id string) []string {
		return []string{"--backend", "etcd", "--etcd-endpoints", etcdURL, "--ttl", cfg.TTL.String(),
			"--kubeconfig", kubeconfig, "--pod-name", id, "--pod-namespace", ns}
	})
	spec := trialSpec{
		start: func(ctx context.Context, election, id string) (*contender, error) {
			_, err := kube.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: id},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app"}}},
			}, metav1.CreateOptions{})
			if err != nil {
				return nil, fmt.Errorf("create pod %s: %w", id, err)
			}
			return base(ctx, election, id)
		},
		// The sidecars' elections are scoped by --pod-namespace.
		queued:     etcdQueued(etcdCli, "/leader-elector/"+ns+":", 2),
		ledTimeout: time.Minute,
		sample: func(_ time.Time, next *contender) (time.Duration, error) {
			s := labels.get(next.id)
			if err := waitChan(ctx, s.ch, time.Minute, "leader label on pod "+next.id); err != nil {
				return 0, err
			}
			return s.at.Sub(next.ledAt), nil
		},
	}
	log.Info("measuring", "system", "leader-elector (etcd) pod label", "trials", cfg.PublishTrials)
	samples, err := runParallel(ctx, spec, "publish", cfg.PublishTrials, 1)
	if err != nil {
		return nil, "", fmt.Errorf("publish latency: %w", err)
	}
	s, err := Summarize(samples)
	if err != nil {
		return nil, "", fmt.Errorf("publish latency: %w", err)
	}
	log.Info("measured", "system", "pod label", "p50", s.P50, "p99", s.P99, "max", s.Max)
	return &Latency{System: "leader-elector (etcd) → pod label", Note: "successor's /watch is_leader → leader label seen by a pod watch", Parallel: 1, Summary: s}, "", nil
}

package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/leader-elector/leader-elector/pkg/kube"
)

// generationTimeout bounds reading the workload's revision at start while
// the API server does not answer (denials and missing objects fail at once).
const generationTimeout = 30 * time.Second

// resolveGeneration returns the generation to publish: --generation's
// number, or with --generation=auto the revision of the workload that
// controls this pod (kube.ReadWorkloadRevision).
//
// With auto, a pod of no workload that keeps revisions (a bare pod, a Job)
// runs with generations off and says so in the log and in /status
// ("generation": 0): no rolling update replaces it, so there is nothing to
// order. Any other failure (RBAC missing, the pod or its ReplicaSet not
// found, a malformed revision, the API server unreachable for 30 s) stops
// the sidecar with an error naming the flag: an operator who asked for
// rollouts that move leadership once learns at deploy time that they would
// not, instead of at the next rollout.
//
// A sidecar restarted in the same pod reuses the generation its predecessor
// recorded in --incarnation-file (same identity, pod UID, backend and
// election), without asking the API server: a pod's workload revision was
// read once for the pod, and a restart after a crash must not wait on, or
// fail with, the API server.
func resolveGeneration(ctx context.Context, cfg *config, inc *incarnationLog, log *slog.Logger) (int64, error) {
	g := cfg.Incarnation.Generation
	if !g.Auto {
		return g.N, nil
	}
	if inc != nil && inc.prev != nil && inc.me.PodUID != "" && inc.prev.Same(inc.me) && inc.prev.Generation > 0 {
		log.Info("--generation=auto: the generation this pod's previous sidecar process read", "generation", inc.prev.Generation,
			"source", "--incarnation-file")
		return inc.prev.Generation, nil
	}
	rc := rest.CopyConfig(cfg.kubeREST)
	if rc.UserAgent == "" {
		rc.UserAgent = "leader-elector"
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return 0, fmt.Errorf("--generation=auto: creating the Kubernetes client: %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, generationTimeout)
	defer cancel()
	rev, err := kube.ReadWorkloadRevision(rctx, client, cfg.Kube.PodNamespace, cfg.Kube.PodName)
	switch {
	case errors.Is(err, kube.ErrNoWorkloadRevision):
		log.Warn("--generation=auto: generations are off: no rolling update replaces this pod", "why", err.Error())
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("--generation=auto: %w (the sidecar needs get on pods, and on replicasets and controllerrevisions "+
			"in group apps; or set --generation to a number, 0 for off)", err)
	}
	log.Info("--generation=auto", "generation", rev.Revision, "source", rev.Source)
	return rev.Revision, nil
}

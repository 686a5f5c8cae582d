package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/spf13/pflag"

	"github.com/leader-elector/leader-elector/internal/incarnation"
	"github.com/leader-elector/leader-elector/pkg/election"
)

// opsFlags are the flags of planned operations: a restarted sidecar's
// clean-up and rolling updates.
type opsFlags struct {
	File       string // --incarnation-file
	PodUID     string
	Generation generationFlag
}

// generationFlag is --generation: a number (0: off) or "auto", which reads
// the revision of the pod's workload at start (generation.go).
type generationFlag struct {
	N    int64
	Auto bool
}

// generationAuto is the --generation value that reads the workload's revision.
const generationAuto = "auto"

func (g *generationFlag) String() string {
	if g.Auto {
		return generationAuto
	}
	return strconv.FormatInt(g.N, 10)
}

func (g *generationFlag) Set(v string) error {
	if v == generationAuto {
		*g = generationFlag{Auto: true}
		return nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return errors.New("want a whole number or auto")
	}
	*g = generationFlag{N: n}
	return nil
}

func (g *generationFlag) Type() string { return "int|auto" }

// reclaimTimeout bounds releasing the previous process's candidacy at start.
const reclaimTimeout = 5 * time.Second

func (f *opsFlags) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.File, "incarnation-file", "", "file on a volume only this pod mounts (an emptyDir) recording this process's candidacy, "+
		"so a sidecar restarted after a crash releases its predecessor's at once instead of after a TTL; "+
		"a second running process with the same file refuses to start (off when empty)")
	fs.StringVar(&f.PodUID, "pod-uid", "", "this pod's UID (downward API metadata.uid; default $POD_UID): "+
		"a record in --incarnation-file written by another pod is never acted on")
	fs.Var(&f.Generation, "generation", "version of the workload as an increasing number, so a rolling update moves leadership once: "+
		"a waiting candidate queues again behind a newer-generation one (0: off); auto reads it from this pod's workload at start "+
		"(a Deployment's ReplicaSet revision, a StatefulSet's or DaemonSet's ControllerRevision; needs --pod-name and get on "+
		"replicasets and controllerrevisions; off for a pod of no such workload)")
}

// complete takes the pod UID from the downward API's usual variable.
func (f *opsFlags) complete(getenv envFunc) {
	if f.PodUID == "" {
		f.PodUID = getenv("POD_UID")
	}
}

// incarnationLog is an open incarnation file and what this process records.
type incarnationLog struct {
	f    *incarnation.File
	prev *incarnation.Record // what the previous process left; nil if nothing
	me   incarnation.Record
	log  *slog.Logger
}

// openIncarnation locks --incarnation-file; it contacts nothing. It returns
// nil when the flag is off, and an error naming the flag when another live
// process holds the file.
func openIncarnation(cfg *config, b election.Backend, log *slog.Logger) (*incarnationLog, error) {
	if cfg.Incarnation.File == "" {
		return nil, nil
	}
	f, prev, err := incarnation.Open(cfg.Incarnation.File)
	if err != nil {
		return nil, fmt.Errorf("--incarnation-file: %w; give every sidecar process its own file (an emptyDir per pod)", err)
	}
	return &incarnationLog{f: f, prev: prev, log: log, me: incarnation.Record{
		Identity: cfg.ID, PodUID: cfg.Incarnation.PodUID, Backend: b.Name(), Election: cfg.Election, PID: os.Getpid(),
	}}, nil
}

// reclaim releases the candidacy the previous process left if the record
// is this candidate's (same identity, pod UID, backend and election):
// holding the file's lock proves that process is dead. A failure is logged;
// the candidacy then expires after its TTL as it would without the file.
func (il *incarnationLog) reclaim(ctx context.Context, b election.Backend) {
	log, prev := il.log, il.prev
	rc, ok := b.(election.Reclaimer)
	switch {
	case !ok:
		log.Warn("--incarnation-file: this backend cannot release a crashed process's candidacy; it expires after the TTL",
			"backend", b.Name())
	case prev == nil:
	case !prev.Same(il.me):
		// A volume shared by mistake, or another --id: not ours to release.
		log.Info("--incarnation-file records another candidate; leaving its candidacy alone",
			"identity", prev.Identity, "pod_uid", prev.PodUID, "backend", prev.Backend, "election", prev.Election)
	default:
		start := time.Now()
		rctx, cancel := context.WithTimeout(ctx, reclaimTimeout)
		err := rc.Reclaim(rctx, prev.Handle)
		cancel()
		if err != nil {
			log.Warn("could not release the previous process's candidacy; it expires within one TTL",
				"handle", prev.Handle, "pid", prev.PID, "err", err)
		} else {
			log.Info("released the previous process's candidacy", "handle", prev.Handle, "pid", prev.PID,
				"took", time.Since(start))
		}
	}
}

// record writes a new candidacy's handle (election.Config.OnCandidacy).
func (il *incarnationLog) record(handle string) {
	r := il.me
	r.Handle = handle
	if err := il.f.Write(r); err != nil {
		il.log.Warn("--incarnation-file: cannot record the candidacy; after a crash it expires after the TTL", "err", err)
	}
}

func (il *incarnationLog) Close() error { return il.f.Close() }

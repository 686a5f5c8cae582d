package cli

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/leader-elector/leader-elector/internal/lossy"
)

// outputs are the sidecar's own lossy outputs (the log, the history file).
// Their writers never block the election; what they lose is counted, logged
// when it changes, exported as metrics and shown in /status and /readyz.
type outputs struct {
	mu   sync.Mutex
	list []output
}

type output struct {
	name  string
	stats func() lossy.Stats
}

func (o *outputs) add(name string, stats func() lossy.Stats) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.list = append(o.list, output{name, stats})
}

func (o *outputs) snapshot() []output {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]output(nil), o.list...)
}

// degraded describes every output that has lost data, one sentence each.
func (o *outputs) degraded() []string {
	var out []string
	for _, x := range o.snapshot() {
		if s := x.stats(); s.Degraded() {
			out = append(out, describe(x.name, s))
		}
	}
	return out
}

func describe(name string, s lossy.Stats) string {
	msg := fmt.Sprintf("%s: %d dropped, %d failed", name, s.Dropped, s.Failed)
	if s.LastErr != nil {
		msg += fmt.Sprintf(" (last error: %v)", s.LastErr)
	}
	return msg
}

// outputsCheckInterval is how often losses are looked for, to be logged.
const outputsCheckInterval = 5 * time.Second

// watch logs a warning whenever an output loses more data, until ctx ends.
// A log that is itself dropping records may drop these too; the counts stay
// in the metrics and /status.
func (o *outputs) watch(ctx context.Context, log *slog.Logger) {
	seen := map[string]lossy.Stats{}
	t := time.NewTicker(outputsCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, x := range o.snapshot() {
			s, prev := x.stats(), seen[x.name]
			if s.Dropped != prev.Dropped || s.Failed != prev.Failed {
				log.Warn("an output is losing data; the election is not affected", "output", x.name,
					"dropped", s.Dropped, "failed", s.Failed, "err", s.LastErr)
			}
			seen[x.name] = s
		}
	}
}

package chaos

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// WriteTimeline writes one line per status change of every process and per
// nemesis event, sorted by monotonic time, with times in seconds relative
// to the first line. Rejected register writes are interleaved too, and
// accepted ones once per writer and token, so the fence's work is visible
// without drowning the rest.
func WriteTimeline(w io.Writer, plan Plan, rec *Record) error {
	type line struct {
		mono int64
		text string
	}
	var lines []line
	for _, r := range rec.Runs {
		for _, e := range r.History {
			role := "follower"
			if e.IsLeader {
				role = "LEADER  "
			}
			lines = append(lines, line{e.Mono, fmt.Sprintf("%-5s %s leader=%q token=%d ready=%t",
				r.Name(), role, e.Leader, e.Token, e.Ready)})
		}
	}
	for _, e := range rec.Events {
		text := fmt.Sprintf("***** nemesis: %s %s", e.Action, e.Target)
		if e.Detail != "" {
			text += " (" + e.Detail + ")"
		}
		lines = append(lines, line{e.Mono, text})
	}
	first := map[string]bool{}
	for _, wr := range rec.Writes {
		key := fmt.Sprintf("%s/%d", wr.Writer, wr.Token)
		switch {
		case !wr.Accepted:
			lines = append(lines, line{wr.At, fmt.Sprintf("      register: REJECTED write by %s token %d (held=%t)", wr.Writer, wr.Token, wr.Held)})
		case !first[key] || wr.Held:
			first[key] = true
			lines = append(lines, line{wr.At, fmt.Sprintf("      register: accepted write by %s token %d (held=%t)", wr.Writer, wr.Token, wr.Held)})
		}
	}
	for i, r := range rec.Rounds {
		lines = append(lines, line{r.Heal, fmt.Sprintf("***** round %d: all faults healed; one agreed leader after %v (bound %v, raft-leader-changed=%t)",
			i, r.Settled, r.SettleBound, r.RaftLeaderChanged)})
		for _, h := range r.Handovers {
			lines = append(lines, line{h.Start, fmt.Sprintf("***** handover %s of %s: a new term after %v", h.Kind, h.From, h.Took)})
		}
	}
	for _, r := range rec.Runs {
		for _, g := range r.Gaps {
			until := "the end of the run"
			if g.To != 0 {
				until = fmt.Sprintf("the entry %v later", time.Duration(g.To-g.From).Round(time.Millisecond))
			}
			lines = append(lines, line{g.From, fmt.Sprintf("      %s: its history may miss entries from here to %s (claims there are taken from its client's polls)", r.Name(), until)})
		}
	}
	for _, g := range rec.Gate {
		lines = append(lines, line{g.Mono, fmt.Sprintf("      gate: pod %s condition True=%t (resourceVersion %s)", g.Pod, g.True, g.RV)})
	}
	slices.SortStableFunc(lines, func(a, b line) int { return cmpInt(a.mono, b.mono) })
	if _, err := fmt.Fprintf(w, "# %v\n# ttl=%v validity=%v wake-grace=%v\n", plan, rec.TTL, rec.Validity, rec.WakeGrace); err != nil {
		return err
	}
	if len(lines) == 0 {
		return nil
	}
	origin := lines[0].mono
	for _, l := range lines {
		if _, err := fmt.Fprintf(w, "%9.3fs  %s\n", float64(l.mono-origin)/float64(time.Second), l.text); err != nil {
			return err
		}
	}
	return nil
}

// Dump writes a failed trial's evidence to root/chaos-failure-<seed>: the
// raw histories, the nemesis events, the register's log, every process's
// log, the violations and the timeline. It returns the directory.
func Dump(root string, plan Plan, rec *Record, res Result, logs map[string]string) (string, error) {
	if root == "" {
		root = os.TempDir()
	}
	dir := filepath.Join(root, fmt.Sprintf("chaos-failure-%d", plan.Seed))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return dir, fmt.Errorf("chaos: %w", err)
	}
	write := func(name string, fn func(io.Writer) error) error {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		if err := fn(f); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	jsonLines := func(items func(*json.Encoder) error) func(io.Writer) error {
		return func(w io.Writer) error { return items(json.NewEncoder(w)) }
	}
	var errs []error
	for _, r := range rec.Runs {
		errs = append(errs, write("history-"+r.Name()+".jsonl", jsonLines(func(enc *json.Encoder) error {
			for _, e := range r.History {
				if err := enc.Encode(e); err != nil {
					return err
				}
			}
			return nil
		})))
	}
	for name, log := range logs {
		errs = append(errs, write("log-"+name+".jsonl", func(w io.Writer) error {
			_, err := io.WriteString(w, log)
			return err
		}))
	}
	errs = append(errs,
		write("events.jsonl", jsonLines(func(enc *json.Encoder) error {
			for _, e := range rec.Events {
				if err := enc.Encode(e); err != nil {
					return err
				}
			}
			return nil
		})),
		write("register.jsonl", jsonLines(func(enc *json.Encoder) error {
			for _, w := range rec.Writes {
				if err := enc.Encode(w); err != nil {
					return err
				}
			}
			return nil
		})),
		write("violations.txt", func(w io.Writer) error {
			_, err := io.WriteString(w, strings.Join(res.Violations, "\n")+"\n")
			return err
		}),
		write("timeline.txt", func(w io.Writer) error { return WriteTimeline(w, plan, rec) }),
	)
	for _, err := range errs {
		if err != nil {
			return dir, fmt.Errorf("chaos: write %s: %w", dir, err)
		}
	}
	return dir, nil
}

package etcdembed

import (
	"bytes"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func TestZapLoggerForwardsOnlyFromMinLevel(t *testing.T) {
	var buf bytes.Buffer
	lg := newZapLogger(slog.New(slog.NewTextHandler(&buf, nil)), zapcore.ErrorLevel, nil)
	lg.Info("chatty info")
	lg.Warn("chatty warn")
	lg.With(zap.String("member", "m0")).Error("disk failed", zap.Int("attempt", 3))

	out := buf.String()
	if strings.Contains(out, "chatty") {
		t.Fatalf("entries below error level were forwarded: %s", out)
	}
	for _, want := range []string{"level=ERROR", `msg="disk failed"`, "member=m0", "attempt=3", "component=etcd"} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q lacks %q", out, want)
		}
	}
}

func TestZapLoggerNilDiscards(t *testing.T) {
	lg := newZapLogger(nil, zapcore.DebugLevel, nil)
	if lg.Core().Enabled(zapcore.FatalLevel) {
		t.Fatal("nil slog logger: core is enabled")
	}
}

func TestZapLoggerMute(t *testing.T) {
	var buf bytes.Buffer
	var mute atomic.Bool
	lg := newZapLogger(slog.New(slog.NewTextHandler(&buf, nil)), zapcore.ErrorLevel, &mute)
	mute.Store(true)
	lg.Error("while stopping")
	if buf.Len() != 0 {
		t.Fatalf("muted logger wrote: %s", buf.String())
	}
	mute.Store(false)
	lg.Error("after restart")
	if !strings.Contains(buf.String(), "after restart") {
		t.Fatalf("unmuted logger wrote %q", buf.String())
	}
}

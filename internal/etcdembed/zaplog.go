package etcdembed

import (
	"context"
	"log/slog"
	"sync/atomic"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// newZapLogger returns a zap logger for etcd that forwards only entries at
// minLevel or above to l, so that an embedded member stays quiet. While mute
// is set nothing is forwarded: a member that is being stopped reports its
// closed listeners as errors. A nil l discards everything.
func newZapLogger(l *slog.Logger, minLevel zapcore.Level, mute *atomic.Bool) *zap.Logger {
	if l == nil {
		return zap.NewNop()
	}
	if mute == nil {
		mute = new(atomic.Bool)
	}
	return zap.New(&slogCore{logger: l, min: minLevel, mute: mute})
}

// slogCore is a zapcore.Core that writes to a slog.Logger.
type slogCore struct {
	logger *slog.Logger
	min    zapcore.Level
	mute   *atomic.Bool
	fields []zapcore.Field
}

func (c *slogCore) Enabled(lvl zapcore.Level) bool { return lvl >= c.min && !c.mute.Load() }

func (c *slogCore) With(fields []zapcore.Field) zapcore.Core {
	next := &slogCore{logger: c.logger, min: c.min, mute: c.mute}
	next.fields = append(append(next.fields, c.fields...), fields...)
	return next
}

func (c *slogCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(ent.Level) {
		return ce.AddCore(ent, c)
	}
	return ce
}

func (c *slogCore) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	attrs := make([]slog.Attr, 0, len(enc.Fields)+1)
	attrs = append(attrs, slog.String("component", "etcd"))
	for k, v := range enc.Fields {
		attrs = append(attrs, slog.Any(k, v))
	}
	c.logger.LogAttrs(context.Background(), slogLevel(ent.Level), ent.Message, attrs...)
	return nil
}

func (c *slogCore) Sync() error { return nil }

func slogLevel(l zapcore.Level) slog.Level {
	switch {
	case l >= zapcore.ErrorLevel:
		return slog.LevelError
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	default:
		return slog.LevelDebug
	}
}

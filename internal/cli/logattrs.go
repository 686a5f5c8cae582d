package cli

import "log/slog"

// humanDurations is the log handlers' ReplaceAttr: slog's JSON handler
// writes a time.Duration as integer nanoseconds ("ttl":10000000000), which
// people misread; this writes Go's duration notation instead ("ttl":"10s",
// "backoff":"1.5s", "took":"250ms"), as the text handler already does. It
// applies to attributes inside groups too.
func humanDurations(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}

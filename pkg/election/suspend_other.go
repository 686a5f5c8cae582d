//go:build !linux

package election

// suspendedNow reports no suspend: only Linux has CLOCK_BOOTTIME. On other
// systems a suspend that overlaps a validity window is not subtracted from
// it (docs/safety.md).
func suspendedNow() int64 { return 0 }

// Command demo runs real sidecar processes in one election on an embedded
// etcd and shows a graceful handover and a crash failover, measured:
//
//	go run ./cmd/demo [--candidates N] [--ttl D] [--keep-running]
//
// It is separate from cmd/sidecar so the released sidecar does not carry an
// etcd server. Run `go run ./cmd/demo --help` for the flags.
package main

import (
	"os"

	"github.com/leader-elector/leader-elector/internal/demo"
)

func main() { os.Exit(demo.Main()) }

// Command sidecar joins a leader election and tells its application, its
// pod and the cluster who leads. Run `sidecar --help` for the flags.
package main

import (
	"os"

	"github.com/leader-elector/leader-elector/internal/cli"
)

func main() { os.Exit(cli.Main()) }

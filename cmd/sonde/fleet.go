package main

import (
	"fmt"
	"io"
)

// runFleet is replaced by the fleet command (issue #8) in progress.
func runFleet(_ []string, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "sonde fleet: not available in this build yet")
	return exitUsage
}

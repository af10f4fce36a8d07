//go:build !unix

package webhook_test

import "time"

// cpuTime is not measured here; the benchmark's CPU figures read zero.
func cpuTime() time.Duration { return 0 }

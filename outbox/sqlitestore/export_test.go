package sqlitestore

import "time"

// SetClock makes d read the time from now (for tests of due times).
func SetClock(d *Driver, now func() time.Time) { d.now = now }

// Claim queries, for plan checks.
const (
	ClaimSQL       = claimSQL
	ClaimMoveOnSQL = claimMoveOnSQL
)

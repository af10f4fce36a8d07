package pgstore

// Claim queries, for EXPLAIN in tests.
var (
	ClaimParkingSQL = claimParkingSQL
	ClaimMoveOnSQL  = claimMoveOnSQL
)

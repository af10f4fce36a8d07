package pgstore

// Claim queries (the walk from a cursor), for EXPLAIN in tests.
var (
	ClaimParkingSQL = claimSQLs[1][0]
	ClaimMoveOnSQL  = claimSQLs[0][0]
)

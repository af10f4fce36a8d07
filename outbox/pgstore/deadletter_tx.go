package pgstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/heraldhq/herald/outbox"
)

// DeadLetterTx moves records to the dead-letter queue in tx, each with the
// error of its outcome, exactly as a claim's Finish does, and deletes the
// records' rows from the outbox where they are still there. It is for a
// relay that does not claim rows (the change-data-capture relay, package
// pgcdc): the dead letters park the aggregates' later events and are
// replayed and discarded with the same operator tools.
func (d *Driver) DeadLetterTx(ctx context.Context, tx pgx.Tx, records []outbox.Record, outcomes []outbox.Outcome) error {
	if len(records) != len(outcomes) {
		return fmt.Errorf("pgstore: dead-letter: %d outcomes for %d records", len(outcomes), len(records))
	}
	if len(records) == 0 {
		return nil
	}
	var dead rowArrays
	for i := range records {
		if err := dead.add(&records[i], 0, outcomes[i]); err != nil {
			return err
		}
	}
	b := &pgx.Batch{}
	b.Queue(d.sql.deadLetter, dead.ids, dead.aggTypes, dead.aggIDs, dead.types, dead.payloads, dead.headers,
		dead.keys, dead.seqs, dead.created, dead.errs, dead.attempts, dead.firstFailed)
	b.Queue(d.sql.deleteInTx, dead.ids)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return Unavailable(fmt.Errorf("pgstore: dead-letter: %w", err))
	}
	return nil
}

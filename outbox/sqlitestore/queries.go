package sqlitestore

import (
	"strings"

	"github.com/heraldhq/herald/outbox"
)

// The driver's queries and migration files are templates naming the
// outbox's tables by placeholder. Objects of a table are named after it in
// the templates: {{outbox}}_due_heads, {{dlq}}_open.
const (
	outboxPlaceholder    = "{{outbox}}"    // the pending events: Names.Name
	dlqPlaceholder       = "{{dlq}}"       // the dead letters: Names.DeadLetters
	sequencesPlaceholder = "{{sequences}}" // the counters: Names.Sequences
)

// placeholders renders the templates for the outbox names.
func placeholders(names outbox.Names) *strings.Replacer {
	return strings.NewReplacer(
		outboxPlaceholder, names.Name,
		dlqPlaceholder, names.DeadLetters,
		sequencesPlaceholder, names.Sequences,
	)
}

// queries are the driver's queries rendered for its outbox, once, in New:
// no call builds query text but the dead-letter filters' conditions.
type queries struct {
	// hot: enqueueing, claiming and finishing
	bumpSequence, insertEvent, claim, claimMoveOn string
	runs                                          string
	deletePublished, scheduleRetry, moveToDLQ     string
	deleteOne                                     string

	// the dead-letter queue and Stats
	replay, replayHeads, markReplayed, discard string
	prune                                      string
	stats, getDeadLetter                       string
	listDeadLetters, replayIDs                 string // each completed with a condition
}

func renderQueries(r *strings.Replacer) queries {
	return queries{
		bumpSequence:    r.Replace(bumpSequenceSQL),
		insertEvent:     r.Replace(insertEventSQL),
		claim:           r.Replace(claimSQL),
		claimMoveOn:     r.Replace(claimMoveOnSQL),
		runs:            r.Replace(runSQL),
		deletePublished: r.Replace(deletePublishedSQL),
		scheduleRetry:   r.Replace(scheduleRetrySQL),
		moveToDLQ:       r.Replace(moveToDLQSQL),
		deleteOne:       r.Replace(deleteOneSQL),
		replay:          r.Replace(replaySQL),
		replayHeads:     r.Replace(replayHeadsSQL),
		markReplayed:    r.Replace(markReplayedSQL),
		discard:         r.Replace(discardSQL),
		prune:           r.Replace(pruneSQL),
		stats:           r.Replace(statsSQL),
		getDeadLetter:   r.Replace(getDeadLetterSQL),
		listDeadLetters: r.Replace(listDeadLettersSQL),
		replayIDs:       r.Replace(replayIDsSQL),
	}
}

// hot returns the statements of enqueueing, claiming and finishing. The
// driver prepares them once on the database (and database/sql then once per
// pooled connection, on the transaction's own connection), so that they are
// not parsed and planned on every call.
func (q *queries) hot() []string {
	return []string{
		q.bumpSequence, q.insertEvent,
		q.claim, q.claimMoveOn, q.runs, q.deletePublished, q.scheduleRetry, q.moveToDLQ, q.deleteOne,
	}
}

// all returns every query, for tests.
func (q *queries) all() []string {
	return append(q.hot(),
		q.replay, q.replayHeads, q.markReplayed, q.discard, q.prune,
		q.stats, q.getDeadLetter, q.listDeadLetters, q.replayIDs)
}

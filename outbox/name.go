package outbox

import (
	"fmt"
	"regexp"
)

// DefaultName is the name of an outbox whose driver is given none.
const DefaultName = "outbox"

// MaxOutboxNameLen bounds an outbox name, so that the longest object derived from
// it (an index name) stays within PostgreSQL's 63-byte identifiers.
const MaxOutboxNameLen = 30

var validName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// Names are the database objects of one outbox, all derived from its name,
// so that several outboxes (one per bounded context, say) live side by side
// in one database without seeing each other's events. An outbox named
// "payments" owns the tables payments, payments_dlq and payments_sequences,
// records its schema version in payments_migrations, and wakes its relays on
// the PostgreSQL channel payments. Indexes, constraints and triggers are
// prefixed with the name as well.
type Names struct {
	Name        string // the outbox's name; also the table of pending events
	DeadLetters string // NAME_dlq
	Sequences   string // NAME_sequences: the per-aggregate counters
	Migrations  string // NAME_migrations: the schema's version table
	Channel     string // the LISTEN/NOTIFY channel (PostgreSQL)
}

// NamesOf derives the names of the outbox called name; "" means
// DefaultName. A name is a lower-case SQL identifier: a letter, then
// letters, digits and underscores, at most MaxOutboxNameLen bytes.
func NamesOf(name string) (Names, error) {
	if name == "" {
		name = DefaultName
	}
	if len(name) > MaxOutboxNameLen || !validName.MatchString(name) {
		return Names{}, fmt.Errorf("outbox: invalid outbox name %q: use a lower-case letter, then lower-case letters, digits and underscores, at most %d bytes", name, MaxOutboxNameLen)
	}
	return Names{
		Name:        name,
		DeadLetters: name + "_dlq",
		Sequences:   name + "_sequences",
		Migrations:  name + "_migrations",
		Channel:     name,
	}, nil
}

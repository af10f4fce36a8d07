package inbox

import (
	"fmt"
	"strings"

	"github.com/heraldhq/herald/outbox"
)

// DefaultName is the name of an inbox whose driver is given none.
const DefaultName = "inbox"

// Names are the database objects of one inbox, all derived from its name,
// so that several inboxes (one per consuming component) share a database.
// An inbox named "shipping" keeps the ids it has seen in shipping_seen, the
// last sequence applied per aggregate in shipping_aggregates, the events
// waiting for a predecessor in shipping_held, and its schema version in
// shipping_migrations. Give an inbox a name other than the outboxes' in the
// same database: an outbox named NAME owns NAME_migrations too.
type Names struct {
	Name       string
	Seen       string // NAME_seen: event ids and when they arrived
	Aggregates string // NAME_aggregates: the last sequence applied per aggregate
	Held       string // NAME_held: events that arrived before a predecessor
	Migrations string // NAME_migrations: the schema's version table
	Admit      string // NAME_admit: PostgreSQL's admission function
}

// NamesOf derives the names of the inbox called name; "" means
// DefaultName. Names follow the outbox's rules (outbox.NamesOf): a
// lower-case SQL identifier of at most outbox.MaxOutboxNameLen bytes.
func NamesOf(name string) (Names, error) {
	if name == "" {
		name = DefaultName
	}
	if _, err := outbox.NamesOf(name); err != nil {
		return Names{}, fmt.Errorf("inbox: invalid inbox name: %w", err)
	}
	return Names{
		Name:       name,
		Seen:       name + "_seen",
		Aggregates: name + "_aggregates",
		Held:       name + "_held",
		Migrations: name + "_migrations",
		Admit:      name + "_admit",
	}, nil
}

// Replacer renders the placeholders {{seen}}, {{aggregates}}, {{held}} and
// {{admit}} of a driver's statements and migrations with n's objects.
func (n Names) Replacer() *strings.Replacer {
	return strings.NewReplacer("{{seen}}", n.Seen, "{{aggregates}}", n.Aggregates,
		"{{held}}", n.Held, "{{admit}}", n.Admit)
}

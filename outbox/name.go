package outbox

import (
	"fmt"
	"regexp"
	"strings"
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
	if reservedWords[name] {
		return Names{}, fmt.Errorf("outbox: invalid outbox name %q: an SQL reserved word", name)
	}
	for _, suffix := range []string{"_dlq", "_sequences", "_migrations"} {
		// payments_dlq would be the dead-letter table of an outbox named payments.
		if strings.HasSuffix(name, suffix) {
			return Names{}, fmt.Errorf("outbox: invalid outbox name %q: a name ending in %s could be another outbox's table", name, suffix)
		}
	}
	return Names{
		Name:        name,
		DeadLetters: name + "_dlq",
		Sequences:   name + "_sequences",
		Migrations:  name + "_migrations",
		Channel:     name,
	}, nil
}

// reservedWords are PostgreSQL's reserved key words (and SQLite's that are
// not among them), which cannot name a table unquoted.
var reservedWords = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`all analyse analyze and any array as asc asymmetric authorization
		binary both case cast check collate collation column concurrently constraint create cross
		current_catalog current_date current_role current_schema current_time current_timestamp
		current_user default deferrable desc distinct do else end except false fetch for foreign
		freeze from full grant group having ilike in initially inner intersect into is isnull join
		lateral leading left like limit localtime localtimestamp natural not notnull null offset on
		only or order outer overlaps placing primary references returning right select session_user
		similar some symmetric system_user table tablesample then to trailing true union unique user
		using variadic verbose when where window with abort action add after attach autoincrement
		before begin by cascade commit conflict database deferred delete detach drop each escape
		exclusive exists explain fail glob if ignore immediate index indexed insert instead
		key match no nothing of pragma query raise recursive regexp reindex release rename replace
		restrict rollback row rows savepoint set temp temporary transaction trigger update vacuum
		values view virtual without`) {
		m[w] = true
	}
	return m
}()

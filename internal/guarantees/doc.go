// Package guarantees holds the end-to-end tests of the outbox's guarantees,
// G1–G7 (atomic write, no loss, per-aggregate order, no skipped rows,
// bounded duplicates, atomic dead-lettering, poison isolation; see the
// outbox package docs and docs/DESIGN.md): each has a test here that runs the real relay against a real database
// (PostgreSQL and SQLite) and a real NATS JetStream, and fails when the
// guarantee breaks. The package has no non-test code.
package guarantees

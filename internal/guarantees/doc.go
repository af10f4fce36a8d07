// Package guarantees holds the end-to-end tests of SPEC §1: each guarantee
// G1–G7 has a test here that runs the real relay against a real database
// (PostgreSQL and SQLite) and a real NATS JetStream, and fails when the
// guarantee breaks. The package has no non-test code.
package guarantees

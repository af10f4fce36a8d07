#!/usr/bin/env bash
# bench-inbox.sh runs the inbox figures of docs/BENCHMARKS.md ("The
# consumer's inbox"): ITERATIONS times, BenchmarkConsume (inbox/pginbox,
# the consumer's transactions) and BenchmarkConsumeIntoInbox (broker/natsjs,
# JetStream to PostgreSQL), each with and without the inbox, one build.
# Each iteration runs a plain side and its inbox side seconds apart, so the
# ratio of the two is paired against the machine's load. It prints one TSV
# line per pair: iteration, benchmark, plain events/s, inbox events/s,
# inbox/plain, and the load average when the iteration began.
#
#   scripts/bench-inbox.sh                  # PostgreSQL "test" on 127.0.0.1, NATS on 4222
#   ITERATIONS=3 scripts/bench-inbox.sh
#
# Settings (environment): ITERATIONS (default 6), BENCHTIME (BenchmarkConsume,
# default 2s), EVENTS (BenchmarkConsumeIntoInbox, default 20000), OUT (the raw
# benchmark output; default a file in the temporary directory).
set -euo pipefail

cd "$(dirname "$0")/.."
ITERATIONS=${ITERATIONS:-6}
BENCHTIME=${BENCHTIME:-2s}
EVENTS=${EVENTS:-20000}
OUT=${OUT:-${TMPDIR:-/tmp}/herald-bench-inbox.txt}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go test -c -o "$tmp/pginbox.test" ./inbox/pginbox/
go test -c -o "$tmp/natsjs.test" ./broker/natsjs/
: >"$OUT"
for i in $(seq "$ITERATIONS"); do
	echo "# iteration $i load $(cut -d' ' -f1 /proc/loadavg)" >>"$OUT"
	echo "bench-inbox: iteration $i of $ITERATIONS" >&2
	(cd inbox/pginbox && "$tmp/pginbox.test" -test.run '^$' -test.bench 'BenchmarkConsume$' -test.benchtime "$BENCHTIME") >>"$OUT"
	(cd broker/natsjs && "$tmp/natsjs.test" -test.run '^$' -test.bench BenchmarkConsumeIntoInbox -test.benchtime "${EVENTS}x") >>"$OUT"
done
echo "bench-inbox: raw output in $OUT" >&2
printf 'iteration\tbenchmark\tplain_events_s\tinbox_events_s\tinbox_per_plain\tload\n'
awk '
	/^# iteration/ { it = $3; load = $5 }
	/^Benchmark.*events\/s/ {
		name = $1; sub(/-[0-9]+$/, "", name)
		for (f = 1; f < NF; f++) if ($(f + 1) == "events/s") rate = $f
		mode = name; sub(/.*\//, "", mode); base = name; sub(/\/[^\/]*$/, "", base)
		if (mode == "plain") plain[base] = rate
		else if (mode == "inbox" && (base in plain)) {
			printf "%s\t%s\t%.0f\t%.0f\t%.2f\t%s\n", it, base, plain[base], rate, rate / plain[base], load
			delete plain[base]
		}
	}' "$OUT"

#!/usr/bin/env bash
# bench-relay.sh runs the relay figures of docs/BENCHMARKS.md ("Relay speed
# close to the limit") with one build, one after the other, and prints one
# TSV line per run (figures and the load average when it ran):
#
#   - relay against the plain loop (compare, --repeat pairs), 1 and 2 workers;
#   - one hot aggregate (--aggregates 1) on each broker in BROKERS;
#   - the relay's rate and peak RSS as the backlog grows (BACKLOGS);
#   - 1, 2 and 4 relay processes on one PostgreSQL (PROCESSES, on PROCESS_EVENTS).
#
#   scripts/bench-relay.sh                       # PostgreSQL "test" on 127.0.0.1, NATS on 4222
#   PARTS="compare hot" scripts/bench-relay.sh   # some parts only
#
# Settings (environment): DB, NATS, BROKERS (default "$NATS embedded"),
# REPEAT (default 3), BACKLOGS (default "10000 200000 1000000 5000000"),
# PROCESSES (default "1 2 4"), PROCESS_EVENTS (default 1000000), PARTS
# (default "compare hot backlog processes"), OUT (default: a file in the
# temporary directory, printed at the end).
set -euo pipefail

cd "$(dirname "$0")/.."
DB=${DB:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
NATS=${NATS:-nats://127.0.0.1:4222}
BROKERS=${BROKERS:-"$NATS embedded"}
REPEAT=${REPEAT:-3}
BACKLOGS=${BACKLOGS:-"10000 200000 1000000 5000000"}
PROCESSES=${PROCESSES:-"1 2 4"}
PROCESS_EVENTS=${PROCESS_EVENTS:-1000000}
PARTS=${PARTS:-"compare hot backlog processes"}
OUT=${OUT:-${TMPDIR:-/tmp}/herald-bench-relay.tsv}

command -v jq >/dev/null || { echo "bench-relay: jq is required (apt-get install -y jq)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/herald" ./cmd/herald
load() { cut -d' ' -f1 /proc/loadavg; }
run() { # label, herald bench arguments…
	local label=$1
	shift
	echo "bench-relay: $label (load $(load))" >&2
	"$tmp/herald" bench --db "$DB" --log-level warn "$@" 2>"$tmp/err" >"$tmp/out" || { cat "$tmp/err" >&2; exit 1; }
	jq -r --arg l "$label" --arg load "$(load)" \
		'[$l, (.relay_baseline_ratio // ""), ([.runs[] | .kind + ":" + (.events_per_sec | floor | tostring)] | join(" ")),
		  .rss_peak_mib, ([.runs[] | .rss_process_peak_mib // empty] | join(" ")), .lost, .reordered, $load] | @tsv' "$tmp/out" | tee -a "$OUT"
}
printf '# label\tratio\truns (events/s)\trss_peak_mib\tper-process peak MiB\tlost\treordered\tload1\n' >"$OUT"
for part in $PARTS; do
	case $part in
	compare)
		for w in 1 2; do
			run "compare workers=$w" --mode compare --repeat "$REPEAT" --workers "$w" --broker "$NATS" --verify=false
		done
		;;
	hot)
		for b in $BROKERS; do
			run "hot aggregate ${b%%:*}" --mode relay --events 20000 --aggregates 1 --broker "$b"
		done
		;;
	backlog)
		for n in $BACKLOGS; do
			run "backlog $n" --mode relay --events "$n" --broker "$NATS" --verify=false
		done
		;;
	processes)
		for p in $PROCESSES; do
			run "processes $p" --mode relay --events "$PROCESS_EVENTS" --processes "$p" --broker "$NATS" --verify=false
		done
		;;
	*)
		echo "bench-relay: unknown part $part" >&2
		exit 2
		;;
	esac
done
echo "bench-relay: figures in $OUT" >&2

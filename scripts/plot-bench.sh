#!/usr/bin/env bash
# plot-bench.sh runs `herald bench --mode full` at several concurrencies and
# plots throughput and p99 latency against concurrency into
# docs/bench-concurrency.png (gnuplot; installed from Debian when missing).
#
#   scripts/plot-bench.sh                     # embedded defaults: SQLite + embedded NATS
#   HERALD_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
#   HERALD_BROKER_URL=nats://127.0.0.1:4222 scripts/plot-bench.sh
#
# Settings (environment): CONCURRENCIES (default "1 2 4 8 16 32"), DURATION
# per point (default 15s), OUT (default docs/bench-concurrency.png), and
# any HERALD_* variable of herald bench. Each point's figures, with the load
# average, go to DATA (default: a file in the temporary directory, printed at
# the end); PLOT_ONLY=1 DATA=file redraws the PNG from such a file without
# running the bench.
set -euo pipefail

cd "$(dirname "$0")/.."
CONCURRENCIES=${CONCURRENCIES:-"1 2 4 8 16 32"}
DURATION=${DURATION:-15s}
OUT=${OUT:-docs/bench-concurrency.png}
DATA=${DATA:-${TMPDIR:-/tmp}/herald-bench-concurrency.tsv}

if ! command -v gnuplot >/dev/null; then
	echo "plot-bench: installing gnuplot-nox" >&2
	if [ "$(id -u)" -eq 0 ]; then
		apt-get update -qq && apt-get install -y -qq gnuplot-nox >/dev/null
	else
		sudo apt-get update -qq && sudo apt-get install -y -qq gnuplot-nox >/dev/null
	fi
fi
db=${HERALD_DATABASE_URL:-sqlite}
db=${db%%:*}
broker=${HERALD_BROKER_URL:-embedded}
broker=${broker%%:*}

if [ -z "${PLOT_ONLY:-}" ]; then
	command -v jq >/dev/null || { echo "plot-bench: jq is required (apt-get install -y jq)" >&2; exit 1; }
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	go build -o "$tmp/herald" ./cmd/herald
	printf '# concurrency\tevents_per_sec\trequests_per_sec\tapi_p50_ms\tapi_p99_ms\te2e_p50_ms\te2e_p99_ms\tlost\treordered\tload1\n' >"$DATA"
	for c in $CONCURRENCIES; do
		echo "plot-bench: concurrency $c for $DURATION (load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
		# A run that lost or reordered an event exits non-zero: no plot then.
		if ! line=$("$tmp/herald" bench --mode full --concurrency "$c" --duration "$DURATION" --log-level warn 2>"$tmp/err"); then
			cat "$tmp/err" >&2
			exit 1
		fi
		echo "$line" | jq -r --arg c "$c" \
			'[$c, .events_per_sec, .requests_per_sec, .api_p50_ms, .api_p99_ms, .e2e_p50_ms, .e2e_p99_ms, .lost, .reordered, .load1] | @tsv' >>"$DATA"
	done
fi
cat "$DATA" >&2

gnuplot <<GNUPLOT
set terminal pngcairo size 1000,560 font "sans,11" noenhanced
set output "$OUT"
set title "herald bench --mode full ($db + $broker, $DURATION per point, $(nproc) cores): throughput and p99 latency vs concurrency"
set xlabel "concurrency (workers)"
set logscale x 2
set xtics ($(echo "$CONCURRENCIES" | sed 's/ \+/, /g'))
set ylabel "per second: events received by the consumer, API requests"
set y2label "p99 latency (ms)"
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
set grid
set key top left
plot "$DATA" using 1:2 with linespoints lw 2 pt 7 title "events/s", \
     "$DATA" using 1:3 with linespoints lw 2 pt 5 title "API requests/s", \
     "$DATA" using 1:5 axes x1y2 with linespoints lw 2 dt 2 pt 9 title "API p99 (ms)", \
     "$DATA" using 1:7 axes x1y2 with linespoints lw 2 dt 2 pt 11 title "commit → consumer p99 (ms)"
GNUPLOT
echo "plot-bench: wrote $OUT and $DATA" >&2

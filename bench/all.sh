#!/usr/bin/env bash
# Every release figure of docs/benchmarks.md, back to back; run it on an
# otherwise idle machine after `cargo build --release --locked -p sluice
# --bins --benches --test integration` (see README.md here).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(dirname "$HERE")
cd "$ROOT"
export SLUICE=${SLUICE:-$ROOT/target/release/sluice}
echo "=== file replay, Sluice then the DuckDB anchor $(date +%T)"; "$HERE/replay.sh"
echo "=== HTTP collector loads $(date +%T)"; "$HERE/http.sh"
echo "=== perf profile of the file replay $(date +%T)"
rm -rf /tmp/rb/lake-perf
SLUICE_CACHE_DIR=/tmp/rb/cache perf record -F 499 -o /tmp/perf.replay.data -- \
  "$SLUICE" run --lake /tmp/rb/lake-perf --listen "" --replay /tmp/rb/in/events.ndjson \
  >/dev/null 2>/tmp/perf.replay.err
perf report -i /tmp/perf.replay.data --no-children --sort dso,sym --stdio 2>/dev/null \
  | python3 "$HERE/categorize.py"
echo "=== Kafka backlog, a bare consumer beside the pipeline $(date +%T)"
if [ -n "${SLUICE_TEST_KAFKA:-}" ]; then
  SLUICE_BENCH_EVENTS=1000000 SLUICE_BENCH_BATCH=100000 \
    cargo test --release --locked -p sluice --test integration kafka_benchmark -- --ignored --nocapture 2>&1 \
    | grep -v "^\s*Compiling" | tail -30
else
  echo "skipped: SLUICE_TEST_KAFKA is not set (a broker as .ci/run starts it)"
fi
echo "=== 50,000 events/s over HTTP for 5 minutes $(date +%T)"; "$HERE/soak.sh"
echo "=== done $(date +%T)"

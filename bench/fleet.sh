#!/usr/bin/env bash
# 1, 2 and 3 `sluice run` instances sharing one 6-partition topic (one
# consumer group) on one lake drain the same backlog: events/s from start
# until gold has every event, how many bronze commits lost a race (a Delta
# conflict, then a retry), and how often the refine role moved.
# On one 2-core machine this shows overhead and contention, not speed-up.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(dirname "$HERE")
S=${SLUICE:-$ROOT/target/release/sluice}
B=${SLUICE_TEST_KAFKA:?name a Kafka-protocol broker (host:port), as .ci/run starts one}
EVENTS=${FLEET_EVENTS:-300000}
W=/tmp/fb
mkdir -p $W
SIM_ARGS=(--events "$EVENTS" --accounts 2000 --days 7 --seed 9)

# The anchor, in the same run: DuckDB doing the same medallion work on the
# same events, read from a file (it has no broker side).
rm -rf "$W/anchor"; mkdir -p "$W/anchor/in"
"$S" simulate --to "$W/anchor/in/events.ndjson" "${SIM_ARGS[@]}" 2>/dev/null
start=$(date +%s.%N)
${ANCHOR_PYTHON:-/tmp/anchor-venv/bin/python} ${ANCHOR:-$ROOT/../shared/anchors/duckdb_medallion.py} \
  --input "$W/anchor/in" --work "$W/anchor/duck" --threads 2 > "$W/anchor/out" 2> "$W/anchor/err"
end=$(date +%s.%N)
python3 -c "import sys; s=float(sys.argv[3])-float(sys.argv[2]); print(f'DuckDB anchor: {sys.argv[1]} events from a file in {s:.1f} s ({int(sys.argv[1])/s:,.0f} events/s)')" \
  "$EVENTS" "$start" "$end"

refined() {
  "$S" --lake "$1" query --format csv "SELECT COALESCE(SUM(events), 0) AS n FROM pipeline_batches" 2>/dev/null \
    | tail -1 || echo 0
}

for n in 1 2 3; do
  topic=fleet-$n-$(date +%s)
  rm -rf "$W/$n"; mkdir -p "$W/$n"
  "$S" simulate --to "kafka://$B/$topic" --partitions 6 "${SIM_ARGS[@]}" 2>/dev/null
  start=$(date +%s.%N)
  pids=()
  for i in $(seq 1 $n); do
    SLUICE_KAFKA__BROKERS=$B SLUICE_KAFKA__TOPIC=$topic SLUICE_KAFKA__GROUP=$topic-g \
    SLUICE_KAFKA__SHARE_PARTITIONS=true SLUICE_CACHE_DIR=$W/cache \
    SLUICE_LOG=sluice=info,sluice_lake=debug NO_COLOR=1 \
      "$S" run --lake "$W/$n/lake" --listen "" 2> "$W/$n/instance-$i.err" >/dev/null &
    pids+=($!)
  done
  until [ "$(refined "$W/$n/lake")" -ge "$EVENTS" ] 2>/dev/null; do sleep 0.5; done
  end=$(date +%s.%N)
  kill -TERM "${pids[@]}"; wait "${pids[@]}" || true
  conflicts=$(cat "$W/$n"/instance-*.err | grep -c "claimed the same app ids" || true)
  takeovers=$(cat "$W/$n"/instance-*.err | grep -c "took the refine role" || true)
  commits=$(ls "$W/$n/lake/bronze_events/_delta_log/" | grep -c '\.json$')
  python3 - "$n" "$EVENTS" "$start" "$end" "$conflicts" "$commits" "$takeovers" <<'EOF'
import sys
n, events, start, end, conflicts, commits, takeovers = sys.argv[1:]
secs = float(end) - float(start)
print(f"{n} instance(s): {events} events into gold in {secs:.1f} s "
      f"({int(events) / secs:,.0f} events/s); {commits} bronze commits, "
      f"{conflicts} lost a race ({int(conflicts) / secs * 60:,.0f}/min); "
      f"refine role taken {takeovers} time(s)")
EOF
done

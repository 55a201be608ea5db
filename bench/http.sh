#!/usr/bin/env bash
# HTTP collector loads against a fresh lake each: 64 x 100-event bodies, 256 x single events.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(dirname "$HERE")
S=${SLUICE:-$ROOT/target/release/sluice}
R=/tmp/hb; mkdir -p $R
export SLUICE_CACHE_DIR=/tmp/rb/cache
run_load() { # port, simulate args...
  local port=$1; shift
  rm -rf $R/lake-$port
  $S run --lake $R/lake-$port --listen 127.0.0.1:$port > $R/run-$port.log 2>&1 &
  local pid=$!
  for i in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.2; done
  $S simulate --to http://127.0.0.1:$port --accounts 2000 "$@" 2>&1 | tail -5
  grep -h "VmHWM" /proc/$pid/status 2>/dev/null || true
  kill -INT $pid; wait $pid
}
echo "== 64 clients x 100-event bodies"
run_load 9920 --events 1000000 --request-events 100 --in-flight 64 --seed 3
echo "== 256 clients x single events"
run_load 9921 --events 30000 --request-events 1 --in-flight 256 --seed 7

#!/usr/bin/env bash
# 50,000 events/s over HTTP for 5 minutes; samples every 30 s.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(dirname "$HERE")
S=${SLUICE:-$ROOT/target/release/sluice}
R=/tmp/sb; rm -rf $R; mkdir -p $R
export SLUICE_CACHE_DIR=/tmp/rb/cache
SLUICE_METRICS__LISTEN=127.0.0.1:9464 $S run --lake $R/lake --listen 127.0.0.1:9930 > $R/run.log 2>&1 &
pid=$!
for i in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/9930) 2>/dev/null && break; sleep 0.2; done
$S simulate --to http://127.0.0.1:9930 --rate 50000 --events 15000000 --request-events 100 --in-flight 64 --accounts 2000 --seed 11 > $R/sim.log 2>&1 &
sim=$!
python3 $HERE/sample.py http://127.0.0.1:9464/metrics $pid 30 300
kill $sim 2>/dev/null; wait $sim; tail -3 $R/sim.log
kill -INT $pid; wait $pid

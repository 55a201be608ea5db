#!/usr/bin/env bash
# File replay, 2M events: Sluice (release) then the DuckDB anchor, same file, same run.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(dirname "$HERE")
S=${SLUICE:-$ROOT/target/release/sluice}
R=/tmp/rb
mkdir -p $R/in
if [ ! -s $R/in/events.ndjson ]; then
  $S simulate --to $R/in/events.ndjson --events 2000000 --accounts 2000 --days 7 \
    --duplicate-fraction 0.01 --late-fraction 0.005 --malformed-fraction 0.005 --seed 5
fi
export SLUICE_CACHE_DIR=$R/cache
# warm the plugin cache once (a service compiles its plugins once)
if [ ! -d $R/cache ]; then head -1000 $R/in/events.ndjson > $R/warm.ndjson; rm -rf $R/warmlake; $S run --lake $R/warmlake --listen "" --replay $R/warm.ndjson >/dev/null 2>&1; fi
rm -rf $R/lake $R/duck
/usr/bin/time -v $S run --lake $R/lake --listen "" --replay $R/in/events.ndjson > $R/sluice.out 2> $R/sluice.err
grep -E "Elapsed|User time|System time|Maximum resident" $R/sluice.err
/usr/bin/time -v ${ANCHOR_PYTHON:-/tmp/anchor-venv/bin/python} ${ANCHOR:-$ROOT/../shared/anchors/duckdb_medallion.py} --input $R/in --work $R/duck --threads 2 > $R/duck.out 2> $R/duck.err
grep -E "Elapsed|User time|System time|Maximum resident" $R/duck.err

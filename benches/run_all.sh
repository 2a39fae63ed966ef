#!/bin/bash
# Every harness one after the other (about 8 minutes on 2 cores); outputs in bench-results/.
cd "$(dirname "$0")/.." && mkdir -p bench-results benches/results
PY=.venv/bin/python
export DATABASE_URL="${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/test}"
date -u > bench-results/date.txt; cat /proc/loadavg >> bench-results/date.txt
$PY -m benches.ipc --json benches/results/ipc.json --plot benches/results/ipc.png > bench-results/ipc.txt 2>&1
$PY -m pytest benches/bench_records.py --benchmark-only -q --benchmark-columns=min,median,mean > bench-results/records.txt 2>&1
$PY -m benches.tick_to_trade --floor-idle busy_spin --json benches/results/tick_to_trade.json --plot benches/results/tick_to_trade.png > bench-results/t2t.txt 2>&1
$PY -m benches.throughput --json benches/results/throughput.json > bench-results/throughput.txt 2>&1
$PY -m pytest benches/bench_feeds.py --benchmark-only -q --benchmark-group-by=group --benchmark-min-rounds=3000 --benchmark-columns=min,median > bench-results/feeds.txt 2>&1
$PY -m benches.feed_throughput --frames 200000 --repeat 2 > bench-results/feed_tp.txt 2>&1
$PY -m sim.bench --seconds 4 > bench-results/sim.txt 2>&1
$PY -m pytest benches/bench_oms.py --benchmark-only -q --benchmark-columns=min,median > bench-results/oms.txt 2>&1
$PY -m benches.bench_oms --cycles 5000 --repeat 5 > bench-results/oms_cycle.txt 2>&1
$PY -m benches.order_latency --n 3000 --burst 20000 --window 512 --echo > bench-results/order_latency.txt 2>&1
$PY -m pytest benches/bench_rms.py benches/bench_strategy.py --benchmark-only -q --benchmark-columns=min,median > bench-results/rms_strategy.txt 2>&1
$PY -m benches.bench_strategy --records 20000 --repeat 2 > bench-results/decision.txt 2>&1
$PY -m benches.persist --json benches/results/persist.json > bench-results/persist.txt 2>&1
$PY -m benches.bench_backtest --seconds 60 --repeat 2 > bench-results/backtest.txt 2>&1
date -u >> bench-results/date.txt; cat /proc/loadavg >> bench-results/date.txt
echo ALLDONE >> bench-results/date.txt

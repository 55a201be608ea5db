#!/usr/bin/env python3
"""Samples a running `sluice run`: RSS, tier positions, events into gold per s,
event-to-gold p50/p99 from histogram bucket deltas, every PERIOD s."""
import sys, time, urllib.request, re
url, pid, period, total = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
def scrape():
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    m = {}
    for line in text.splitlines():
        if line.startswith('#') or not line.strip(): continue
        k, v = line.rsplit(' ', 1)
        m[k] = float(v)
    return m
def rss():
    for l in open(f'/proc/{pid}/status'):
        if l.startswith('VmRSS'): return int(l.split()[1]) // 1024
def buckets(m):
    b = {}
    for k, v in m.items():
        mm = re.match(r'sluice_event_to_gold_seconds_bucket\{le="([^"]+)"\}', k)
        if mm: b[float('inf') if mm.group(1) == '+Inf' else float(mm.group(1))] = v
    return b
def q(b, frac):
    items = sorted(b.items()); tot = items[-1][1] if items else 0
    if tot <= 0: return None
    for le, c in items:
        if c >= frac * tot: return le
def diff(a, b): return {k: a.get(k, 0) - b.get(k, 0) for k in a}
start = time.time(); prev = scrape(); prev_t = start
print('| t | RSS MiB | into gold /s | bronze / silver / gold | e2g p50 / p99 (interval) | e2g p50 / p99 (cumulative) |')
while time.time() - start < total:
    time.sleep(period)
    now = scrape(); t = time.time()
    ev = now.get('sluice_events_total', 0) - prev.get('sluice_events_total', 0)
    pos = [int(now.get(f'sluice_tier_position{{tier="{x}"}}', -1)) for x in ('bronze', 'silver', 'gold')]
    bi = diff(buckets(now), buckets(prev)); bc = buckets(now)
    print(f'| {t-start:.0f} s | {rss()} | {ev/(t-prev_t):,.0f} | {pos[0]} / {pos[1]} / {pos[2]} | ≤ {q(bi,.5)} / ≤ {q(bi,.99)} s | ≤ {q(bc,.5)} / ≤ {q(bc,.99)} s |', flush=True)
    prev, prev_t = now, t

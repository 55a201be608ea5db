#!/usr/bin/env python3
"""Groups `perf report --no-children --sort dso,sym --stdio -g none` self time by
what the code does. Usage: perf report ... | categorize.py"""
import re, sys, collections
cats = [
    ('wasm (plugins, JIT code)', r'\[unknown\]|jit-|wasm|cranelift|wasmtime'),
    ('parquet encode/decode', r'parquet::|snap::|zstd|ZSTD|lz4|flate|miniz|crc32'),
    ('arrow IPC', r'arrow_ipc'),
    ('arrow kernels', r'arrow_|arrow::'),
    ('datafusion', r'datafusion'),
    ('delta (delta-rs, kernel)', r'deltalake|delta_kernel|buoyant'),
    ('json (serde)', r'serde_json|serde::'),
    ('allocator', r'mi_|mimalloc|_int_malloc|_int_free|malloc|free|realloc'),
    ('memcpy/memmove/memset', r'memcpy|memmove|memset|__memcmp|memcmp'),
    ('kernel', r'\[kernel|\[k\]'),
    ('hashing', r'hash|ahash|Hasher|xxh|siphash'),
    ('tokio/runtime', r'tokio'),
]
tot = collections.Counter(); top = []
for line in sys.stdin:
    m = re.match(r'\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)', line)
    if not m: continue
    pct, dso, kind, sym = float(m.group(1)), m.group(2), m.group(3), m.group(4)
    text = f'{dso} [{kind}] {sym}'
    for name, rx in cats:
        if re.search(rx, text):
            tot[name] += pct; break
    else:
        tot['other'] += pct
    top.append((pct, dso, sym[:90]))
print('| what | self time |'); print('|---|---:|')
for k, v in tot.most_common(): print(f'| {k} | {v:.1f} % |')
print(); print('top symbols:')
for pct, dso, sym in top[:25]: print(f'{pct:6.2f}%  {dso:20.20s} {sym}')

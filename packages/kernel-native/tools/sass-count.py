#!/usr/bin/env python3
"""Instruction counts per kernel from `cuobjdump -sass` output (read on stdin).

    cuobjdump -sass trirun.o | python3 tools/sass-count.py [NAME_REGEX ...]

For each kernel whose mangled name matches one of the regexes (all kernels
without one): the number of SASS instructions, those between its first and
last HMMA/HGMMA (the unrolled tile loop, roughly), and the opcodes that
dominate that span. Runs on the GPU machine, where cuobjdump is; compare two
builds by running it on both objects with the same regexes.
"""
import re
import sys
from collections import Counter

patterns = [re.compile(p) for p in sys.argv[1:]]
kernels = {}
name = None
for line in sys.stdin:
    m = re.match(r"\s*Function : (\S+)", line)
    if m:
        name = m.group(1)
        kernels[name] = []
        continue
    m = re.match(r"\s*/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)", line)
    if m and name is not None:
        kernels[name].append(m.group(1))

for name, ops in kernels.items():
    if patterns and not any(p.search(name) for p in patterns):
        continue
    mma = [i for i, op in enumerate(ops) if op.startswith(("HMMA", "HGMMA"))]
    span = ops[mma[0] : mma[-1] + 1] if mma else []
    base = Counter(op.split(".")[0] for op in span)
    top = ", ".join(f"{op} {c}" for op, c in base.most_common(12))
    print(f"{name}\n  total {len(ops)}  mma-span {len(span)} (mma {len(mma)}): {top}")

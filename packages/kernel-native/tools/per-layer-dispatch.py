#!/usr/bin/env python3
"""Per-layer times of a device report beside the launches the dispatcher makes for them.

Reads the `per-layer lines` of kernel-probe tables in a report (lines like
`llama2-7b  k= 4096 n= 4096 m= 256  stream: trirun ... graph: trirun 16.6 fp16 16.8 us x1.01`),
keeps those measured against cuBLAS, and prints for each (k, n, m) from 129 rows on the median graph
times, the median speedup and the launches that tools/dispatch-check.cu --plans reports for it (sm_90).
Usage: python3 tools/per-layer-dispatch.py REPORT DISPATCH_CHECK_BINARY
"""
import collections
import re
import statistics
import subprocess
import sys

LINE = re.compile(
    r"^(\S+)\s+k=\s*(\d+) n=\s*(\d+) m=\s*(\d+)\s+stream: trirun\s+([\d.]+) fp16\s+([\d.]+) us x([\d.]+)"
    r"\s+graph: trirun\s+([\d.]+) fp16\s+([\d.]+) us x([\d.]+)"
)


def main(report: str, binary: str) -> None:
    samples = collections.defaultdict(list)
    for line in open(report, encoding="utf8"):
        match = LINE.match(line)
        if match and float(match.group(9)) > 0:  # TriRun-only runs print fp16 0.0
            key = (match.group(1), int(match.group(2)), int(match.group(3)), int(match.group(4)))
            samples[key].append((float(match.group(8)), float(match.group(9))))
    keys = sorted(k for k in samples if k[3] >= 129)
    query = "".join(f"{k} {n} {m} 128\n" for (_, k, n, m) in keys)
    plans = {}
    for line in subprocess.run([binary, "--plans"], input=query, capture_output=True, text=True, check=True).stdout.splitlines():
        head, launches = line.split(":", 1)
        k, n, m, _ = map(int, head.split())
        plans[(k, n, m)] = launches.strip()
    print(f"{'set':16} {'k':>5} {'n':>5} {'m':>4}  {'trirun':>7} {'fp16':>7} {'x':>5}  launches (sm_90)  [samples]")
    for key in keys:
        name, k, n, m = key
        rows = samples[key]
        trirun = statistics.median(r[0] for r in rows)
        fp16 = statistics.median(r[1] for r in rows)
        ratio = statistics.median(r[1] / r[0] for r in rows)
        print(f"{name:16} {k:5} {n:5} {m:4}  {trirun:7.1f} {fp16:7.1f} {ratio:5.2f}  {plans[(k, n, m)]}  [{len(rows)}]")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])

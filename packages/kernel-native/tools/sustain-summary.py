#!/usr/bin/env python3
"""device-probe.sh `sustain`: attribute nvidia-smi samples to the kernel running at the time.

Usage: sustain-summary.py sustain.txt sustain-smi.csv
Each "sustain: <label> from <t0> to <t1>: ..." line of kernel-probe is one kernel run back to back; the
samples inside its span (the first second left out: nvidia-smi's power reading averages about a second) give its SM clock and power.
"""
import re
import statistics
import sys
from datetime import datetime

spans, shape = [], ""
for line in open(sys.argv[1]):
    if line.startswith("one: k=") or line.startswith("one: cuBLAS"):
        shape = re.search(r"k=\d+ n=\d+ m=\d+", line).group(0)
    m = re.match(r"sustain: (\S+) from ([\d.]+) to ([\d.]+): (\d+) calls, ([\d.]+) us per call", line)
    if m:
        spans.append((shape, m.group(1), float(m.group(2)), float(m.group(3)), float(m.group(5))))

samples = []
for line in open(sys.argv[2]):
    f = [x.strip() for x in line.split(",")]
    if len(f) != 5:
        continue
    try:
        t = datetime.strptime(f[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()  # local time, as nvidia-smi writes it
        samples.append((t, float(f[1]), float(f[2]), float(f[3]), f[4]))
    except ValueError:
        continue

print("kernel steady state (nvidia-smi every 100 ms, first second of each span left out):")
for shape, label, t0, t1, us in spans:
    inside = [s for s in samples if t0 + 1.0 <= s[0] <= t1]
    if not inside:
        print(f"  {shape} {label:7s} {us:9.1f} us per call; no samples in its span (clock of this machine vs nvidia-smi's?)")
        continue
    clock = statistics.median(s[1] for s in inside)
    power = statistics.median(s[2] for s in inside)
    reasons = sorted({s[4] for s in inside})
    print(f"  {shape} {label:7s} {us:9.1f} us per call; SM {clock:.0f} MHz, {power:.0f} W of {inside[0][3]:.0f}"
          f" ({len(inside)} samples; clock reasons {', '.join(reasons)}); {us * power / 1000:.1f} mJ per call")

#!/usr/bin/env python3
"""A/B runs of kernel-probe `launch` side by side: one row per (set, m), one column per variant.

Reads a log where each run starts with a line `--- <label>` (device-probe.sh `envs`, `clusters`, `base`
and the call scripts print them) followed by the probe's `SUM <set> m= <m> ... graph x<r> (trirun <us> us)`
lines. Labels that repeat are rounds of the same variant ("round 2" and the like are dropped from the
label). For each variant it prints the graph times of TriRun of every round (min-max where there are
several) and the change of the median against the first variant, so a device log becomes a NOTES table
without copying numbers by hand.
With --layers, one row per layer and m instead (the probe's per-layer lines, `<set> k= n= m= ... graph: trirun
<us> ... b=<blocks>]`), where a variant's cell also says how many blocks it launched (a clustered launch counts
columns x cluster size).
Usage: python3 tools/ab-table.py LOG [--stream] [--layers]   (--stream: the back-to-back stream times instead)
"""
import collections
import re
import statistics
import sys

SUM = re.compile(
    r"^SUM (\S+)\s+m=\s*(\d+)\s+stream x[\d.]+ \(trirun ([\d.]+) us\)\s+graph x[\d.]+ \(trirun ([\d.]+) us\)"
)
LAYER = re.compile(
    r"^(\S+)\s+k=\s*(\d+) n=\s*(\d+) m=\s*(\d+)\s+stream: trirun\s+([\d.]+) .*graph: trirun\s+([\d.]+) .*b=(\d+)\]"
)
LABEL = re.compile(r"^--- (.*)$")
ROUND = re.compile(r"\bround \d+\s*")


def parse(lines, stream=False, layers=False):
    """{label: {(set, m) or (layer, m, blocks): [us, ...]}} in the order the labels first appear."""
    runs = collections.OrderedDict()
    label = None
    for line in lines:
        found = LABEL.match(line.strip())
        if found:
            label = ROUND.sub("", found.group(1)).strip() or found.group(1).strip()
            runs.setdefault(label, collections.defaultdict(list))
            continue
        if layers:
            found = LAYER.match(line.strip())
            if found and label is not None:
                name = f"{found.group(1)} {found.group(2)} x {found.group(3)}"
                key = (name, int(found.group(4)))
                runs[label][key].append(float(found.group(5 if stream else 6)))
                runs[label].setdefault(("blocks",) + key, []).append(int(found.group(7)))
            continue
        found = SUM.match(line.strip())
        if found and label is not None:
            key = (found.group(1), int(found.group(2)))
            runs[label][key].append(float(found.group(3 if stream else 4)))
    return runs


def table(runs):
    """Markdown rows: set, m, then each variant's times and its median's change against the first."""
    labels = list(runs)
    if not labels:
        return ["(no `--- label` runs with SUM lines found)"]
    keys = []
    for label in labels:
        for key in runs[label]:
            if key not in keys and key[0] != "blocks":
                keys.append(key)
    out = ["| set | m | " + " | ".join(labels) + " |", "| --- | --- |" + " --- |" * len(labels)]
    for key in keys:
        base = runs[labels[0]].get(key)
        base_median = statistics.median(base) if base else None
        cells = []
        for label in labels:
            times = runs[label].get(key)
            if not times:
                cells.append("-")
                continue
            span = f"{min(times):.1f}" if len(times) == 1 else f"{min(times):.1f}-{max(times):.1f}"
            if label != labels[0] and base_median:
                span += f" ({(statistics.median(times) / base_median - 1) * 100:+.1f}%)"
            blocks = runs[label].get(("blocks",) + key)
            if blocks:
                span += f" b={blocks[0]}"
            cells.append(span)
        out.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
    return out


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(argv) >= 2 else 2
    with open(argv[1], encoding="utf-8", errors="replace") as f:
        runs = parse(f, stream="--stream" in argv[2:], layers="--layers" in argv[2:])
    print("\n".join(table(runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

#!/usr/bin/env bash
# One device call: build kernel-probe against cuBLAS on the GPU machine, then
# correctness, sanitizers and timings. Usage (repo root): bash packages/kernel-native/tools/device-probe.sh [what...]
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/out}; mkdir -p "$out"
# sm_90a: the Hopper kernel's wgmma; TRIRUN_HAVE_SM90A lets the dispatcher pick it.
ARCH="-gencode arch=compute_90a,code=sm_90a -DTRIRUN_HAVE_SM90A"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem --format=csv
# The GPU's clocks, power and clock reasons every 500 ms for the whole call (CLOCKS=0: off), summarised at the
# end: from m ~ 128 on the H200 runs at its 700 W power cap, SM clocks ~1.45 GHz (NOTES.md, session 15).
if [ "${CLOCKS:-1}" != 0 ]; then
  nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.max.sm,power.draw,power.limit,temperature.gpu,clocks_event_reasons.active \
    --format=csv,noheader,nounits -lms 500 > "$out/clocks.csv" 2>&1 &
  clocks_pid=$!
  summarize_clocks() {
    kill "$clocks_pid" 2> /dev/null; wait "$clocks_pid" 2> /dev/null
    python3 - "$out/clocks.csv" << 'PY' | tee "$out/clocks.txt"
import statistics, sys
rows = [[f.strip() for f in l.split(",")] for l in open(sys.argv[1]) if l.count(",") == 6]
def num(v):
    try: return float(v)
    except ValueError: return None
sm = [num(r[1]) for r in rows if num(r[1]) is not None]
busy = [r for r in rows if num(r[3]) is not None and num(r[3]) > 0.85 * (num(r[4]) or 1e9)]
print(f"clocks: {len(rows)} samples; SM {min(sm, default=0):.0f}-{max(sm, default=0):.0f} MHz, median {statistics.median(sm) if sm else 0:.0f}")
if busy:
    b = [num(r[1]) for r in busy]
    print(f"  above 85% of the power limit: {len(busy)} samples, SM {min(b):.0f}-{max(b):.0f} MHz, median {statistics.median(b):.0f}")
print("  reasons seen:", sorted({r[6] for r in rows}))
PY
  }
  trap summarize_clocks EXIT
fi
# PROBE_OBJECT=path: link a trirun.cu object compiled elsewhere for sm_90a (a minute of device time saved):
#   nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -DTRIRUN_HAVE_SM90A -Isrc/kernel -c src/kernel/trirun.cu
kernel_source=${PROBE_OBJECT:-src/kernel/trirun.cu}
nvcc -O3 -std=c++17 $ARCH -Xptxas -v -Isrc/kernel tools/kernel-probe.cu "$kernel_source" -lcublas -o /tmp/probe 2> "$out/ptxas.txt" || { cat "$out/ptxas.txt"; exit 1; }
what=${*:-check sanitize speed}
for w in $what; do
  echo "=== $w"
  case $w in
    check) timeout 200 /tmp/probe check --quick 2>&1 | tee "$out/check.txt" | tail -40 ;;
    checkfull) /tmp/probe check 2>&1 | tee "$out/check.txt" | tail -40 ;;
    sanitize)
      # (The sanitize sweep computes its reference with a plain kernel, not cuBLAS: see plain_gemm_f32.)
      timeout 120 compute-sanitizer --tool memcheck /tmp/probe sanitize 2>&1 | tail -8 | tee "$out/memcheck.txt"
      timeout 200 compute-sanitizer --tool racecheck /tmp/probe sanitize 2>&1 | tail -8 | tee "$out/racecheck.txt" ;;
    speed) timeout 400 /tmp/probe speed 2>&1 | tee "$out/speed.txt" ;;
    stalls) ncu --clock-control none --launch-skip 2 --launch-count 1 -k regex:trirun --metrics regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio,smsp__inst_executed.sum,sm__cycles_elapsed.avg,smsp__issue_active.avg.pct_of_peak_sustained_active /tmp/probe one ${NCU_ARGS:-8192 24576 16 128} 2>&1 | grep -E "stalled|inst_executed|cycles_elapsed|issue_active" | awk '$NF+0 > 0.05' | tee -a "$out/stalls.txt" ;;
    ncu)
      # One call's profile (NCU_ARGS="k n m g"); ComputeWorkloadAnalysis has the tensor pipes' utilisation
      # (what the Hopper kernel at m >= 128 needs next: NOTES.md, session 12).
      ncu --clock-control none --launch-skip 2 --launch-count 1 -k regex:trirun --section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section SchedulerStats --section WarpStateStats --section Occupancy --section LaunchStats /tmp/probe one ${NCU_ARGS:-8192 28672 16 128} 2>&1 | tee "$out/ncu.txt" | grep -vE "^    -+|^\s*$" | tail -140 ;;
    tiles) timeout 200 /tmp/probe tiles 2>&1 | tee "$out/tiles.txt" ;;
    power)
      # TriRun and cuBLAS FP16 on one shape (NCU_ARGS="k n m g", default the 70B gate/up layer at m = 1024),
      # clocks as the GPU sets them: each kernel's duration, achieved SM clock, tensor-pipe and DRAM use.
      # Whether the Hopper kernel runs at a lower clock than cuBLAS at the 700 W cap (NOTES.md, session 15)
      # is the question; warm calls (the weights fit in L2 only for small shapes).
      PROBE_ONE_CUBLAS=1 ncu --clock-control none --launch-skip 20 --launch-count 200 -k regex:"trirun|nvjet|gemm|sm90" \
        --metrics gpu__time_duration.sum,sm__cycles_elapsed.avg.per_second,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__throughput.avg.pct_of_peak_sustained_elapsed \
        /tmp/probe one ${NCU_ARGS:-8192 57344 1024 128} 2>&1 | tee "$out/power.txt" | grep -E "^  [a-z_]|duration|per_second|hmma|dram__|sm__throughput|^one" | tail -60 ;;
    sustain)
      # Steady state at the power cap: TriRun, then cuBLAS FP16, each back to back for SECONDS_EACH (default 4) on
      # each shape of SUSTAIN_ARGS ("k n m g;k n m g", default the 70B gate/up and the 7B o layer at large m),
      # with nvidia-smi sampled every 100 ms: per kernel its time per call, SM clock and power in its span.
      nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,power.limit,clocks_event_reasons.active \
        --format=csv,noheader,nounits -lms 100 > "$out/sustain-smi.csv" 2>&1 &
      smi_pid=$!
      IFS=';' read -ra shapes <<< "${SUSTAIN_ARGS:-8192 57344 1024 128;4096 4096 512 128;4096 4096 2048 128}"
      for shape in "${shapes[@]}"; do
        PROBE_ONE_CUBLAS=1 PROBE_ONE_SECONDS=${SECONDS_EACH:-4} timeout $((2 * ${SECONDS_EACH:-4} + 40)) /tmp/probe one $shape 2>&1
      done | tee "$out/sustain.txt"
      kill $smi_pid 2> /dev/null; wait $smi_pid 2> /dev/null
      python3 tools/sustain-summary.py "$out/sustain.txt" "$out/sustain-smi.csv" | tee -a "$out/sustain.txt" ;;
    sources)
      # Stall samples per SASS instruction (summarise here with tools/ncu-stalls.py). NCU_ARGS="k n m g".
      args=${NCU_ARGS:-8192 43520 1 128}; tag=$(echo $args | tr ' ' '_')
      ncu --clock-control none --launch-skip 2 --launch-count 1 -k regex:trirun --section SpeedOfLight \
        --section MemoryWorkloadAnalysis --section SchedulerStats --section WarpStateStats --section SourceCounters \
        --import-source no -o /tmp/rep_$tag /tmp/probe one $args > /dev/null 2>&1
      ncu -i /tmp/rep_$tag.ncu-rep --page details > "$out/details_$tag.txt" 2>&1
      ncu -i /tmp/rep_$tag.ncu-rep --page source --csv --print-source sass | xz -6 > "$out/src_$tag.csv.xz" ;;
    trace)
      # Per-block timestamps of four back-to-back cold calls (entry, first tile, main loop, reduction,
      # exit) and the empty-kernel launch floor; TRACE_ARGS="k n m [k n m ...]" (default: 7B, 70B shapes).
      nvcc -O3 -std=c++17 $ARCH -DTRIRUN_TRACE -Isrc/kernel tools/kernel-probe.cu src/kernel/trirun.cu -lcublas -o /tmp/probe_trace || exit 1
      timeout 200 /tmp/probe_trace trace ${TRACE_ARGS:-} 2>&1 | tee "$out/trace.txt" ;;
    speedq) timeout 200 /tmp/probe speed --quick 2>&1 | tee "$out/speed.txt" ;;
    ceiling)
      # The memory side's ceiling of the TMA small-batch kernel: the same calls with consumers that
      # compute nothing (-DTRIRUN_COPY_ONLY: 1 the packed layout's boxes, 2 contiguous tiles),
      # and the compute side's: consumers that never wait for data (-DTRIRUN_COMPUTE_ONLY),
      # against the real kernel, TriRun only, at MS (default 1,16). COPY1_OBJECT / COPY2_OBJECT / COMPUTE_OBJECT:
      # objects compiled elsewhere with those switches (a minute of device time saved each; see PROBE_OBJECT).
      for v in 1 2; do
        obj_var=COPY${v}_OBJECT
        nvcc -O3 -std=c++17 $ARCH -DTRIRUN_COPY_ONLY=$v -Isrc/kernel tools/kernel-probe.cu "${!obj_var:-src/kernel/trirun.cu}" -lcublas -o /tmp/probe_copy$v || exit 1
      done
      nvcc -O3 -std=c++17 $ARCH -DTRIRUN_COMPUTE_ONLY -Isrc/kernel tools/kernel-probe.cu "${COMPUTE_OBJECT:-src/kernel/trirun.cu}" -lcublas -o /tmp/probe_compute || exit 1
      for r in 1 2; do for p in probe probe_copy1 probe_copy2 probe_compute; do echo "--- round $r $p"
        PROBE_TRIRUN_ONLY=1 timeout 100 /tmp/$p launch ${MS:-1,16} 2>&1; done; done | tee "$out/ceiling.txt" | grep -E "^---|SUM" ;;
    speedm)
      # The speed table at MS (default 32..4096), with the Hopper kernel and with TRIRUN_HOPPER=0.
      ms=${MS:-32,64,128,256,512,1024,4096}
      timeout 250 /tmp/probe speedm $ms 2>&1 | tee "$out/speedm.txt"
      TRIRUN_HOPPER=0 timeout 250 /tmp/probe speedm $ms 2>&1 | tee "$out/speedm-nohopper.txt" | grep SUM ;;
    decodeonce)
      # The Hopper kernel with -DTRIRUN_EXP_DECODE_ONCE=1 (a slice's first tile decoded, its fragments reused:
      # timing only, wrong results) against the real one, TriRun only, alternating, at MS (default 256..2048).
      nvcc -O3 -std=c++17 $ARCH -DTRIRUN_EXP_DECODE_ONCE=1 -Isrc/kernel tools/kernel-probe.cu src/kernel/trirun.cu -lcublas -o /tmp/probe_once || exit 1
      for p in probe probe_once probe probe_once; do echo "--- $p"; PROBE_TRIRUN_ONLY=1 timeout 100 /tmp/$p launch ${MS:-256,512,1024,2048} 2>&1 | grep SUM; done | tee "$out/decodeonce.txt" ;;
    narrow)
      # TRIRUN_NARROW_CLUSTERS (on by default since session 26: 17..32 rows of narrow layers on the small kernel
      # where its launch runs in balanced clusters): check --quick at the default, then TriRun-only launches off /
      # on at MS (default 17,24,32), two rounds, per-layer lines in narrow.txt.
      timeout 150 /tmp/probe check --quick 2>&1 | tee "$out/check-narrow.txt" | grep -E "FAIL" | head -20
      tail -1 "$out/check-narrow.txt"
      for r in 1 2; do for v in 0 1; do echo "--- round $r TRIRUN_NARROW_CLUSTERS=$v"
        TRIRUN_NARROW_CLUSTERS=$v PROBE_TRIRUN_ONLY=1 timeout 100 /tmp/probe launch ${MS:-17,24,32} 2>&1; done; done \
        | tee "$out/narrow.txt" | grep -E "^---|SUM|graph check" ;;
    launch)
      # Back-to-back calls on a stream against the same calls in one CUDA graph (TriRun and cuBLAS), at MS.
      timeout 250 /tmp/probe launch ${MS:-1,16} 2>&1 | tee "$out/launch.txt" | grep -E "SUM|GRAPH|graph check" ;;
    envs)
      # Environment variants A/B in the `launch` mode at MS, two rounds: ENVS="A=0;A=1 B=2" (';' between
      # variants), e.g. ENVS="TRIRUN_PDL=0;TRIRUN_PDL=1" for dependent launch off and on.
      IFS=';' read -ra variants <<< "${ENVS:?set ENVS}"
      for r in 1 2; do for v in "${variants[@]}"; do echo "--- $v"; env $v timeout 120 /tmp/probe launch ${MS:-1,16} 2>&1; done; done \
        | tee "$out/envs.txt" | grep -E "^---|SUM|GRAPH|graph check" ;;
    clusters)
      # Clustered small-batch launches (TRIRUN_SMALL_CLUSTERS, on by default as 2 with chains only as clusters of
      # >= 3 blocks; NOTES.md, sessions 19 and 21): the check sweep and both sanitizers with clusters wherever
      # feasible (2, TRIRUN_SMALL_CLUSTER_CHAIN_MIN=0: chains as clusters of 2 too), which launches took them (b= is the block
      # count: a clustered launch has columns x blocks per cluster), then TriRun-only A/B of 0 / 1 / 2 at MS
      # (default 1,4,16,32), two rounds, and traces of two short layers with and without (~7 min in all).
      nvcc -O3 -std=c++17 $ARCH -DTRIRUN_TRACE -Isrc/kernel tools/kernel-probe.cu src/kernel/trirun.cu -lcublas \
        -o /tmp/probe_trace > /dev/null 2>&1 &
      trace_build=$!
      TRIRUN_SMALL_CLUSTERS=2 TRIRUN_SMALL_CLUSTER_CHAIN_MIN=0 timeout 240 /tmp/probe check --quick 2>&1 | tee "$out/check-clusters.txt" | grep -E "FAIL" | head -20
      tail -2 "$out/check-clusters.txt"
      for tool in memcheck racecheck; do
        TRIRUN_SMALL_CLUSTERS=2 TRIRUN_SMALL_CLUSTER_CHAIN_MIN=0 timeout 150 compute-sanitizer --tool $tool /tmp/probe sanitize 2>&1 | tail -3 | tee "$out/$tool-clusters.txt"
      done
      TRIRUN_SMALL_CLUSTERS=2 TRIRUN_SMALL_CLUSTER_CHAIN_MIN=0 PROBE_TRIRUN_ONLY=1 timeout 60 /tmp/probe launch 1,16 2>&1 | grep -E " k=" | sed 's/ fp16 .*graph:/ graph:/' | tee "$out/clusters-launches.txt"
      for r in 1 2; do for v in 0 1 2; do echo "--- round $r TRIRUN_SMALL_CLUSTERS=$v"
        TRIRUN_SMALL_CLUSTERS=$v PROBE_TRIRUN_ONLY=1 timeout 60 /tmp/probe launch ${MS:-1,4,16,32} 2>&1; done; done \
        | tee "$out/clusters-ab.txt" | grep -E "^---|SUM|GRAPH|graph check"
      wait $trace_build || exit 1
      for v in 0 2; do echo "--- TRIRUN_SMALL_CLUSTERS=$v"
        TRIRUN_SMALL_CLUSTERS=$v timeout 60 /tmp/probe_trace trace 2560 2560 1 2560 2560 16 4096 4096 1 2>&1; done | tee "$out/clusters-trace.txt" ;;
    base)
      # A/B against another version of the kernel: BASE=<a trirun.cu> (e.g. `git show
      # <rev>:packages/kernel-native/src/kernel/trirun.cu > .device/trirun-base.cu` here, then
      # BASE=../../.device/trirun-base.cu there). Alternates base, new, base, new: single
      # launches drift by a few percent between runs, so compare within one call.
      mkdir -p /tmp/base && cp "${BASE:?set BASE to a trirun.cu}" /tmp/base/trirun.cu && cp src/kernel/trirun.h /tmp/base/
      nvcc -O3 -std=c++17 $ARCH -I/tmp/base tools/kernel-probe.cu /tmp/base/trirun.cu -lcublas -o /tmp/probe_base || exit 1
      for p in probe_base probe probe_base probe; do echo "--- $p"; timeout 100 /tmp/$p speed --quick 2>&1 | grep -v "d2d"; done | tee "$out/speed-ab.txt" | grep -E "^---|SUM" ;;
    checks)
      # check --quick, memcheck and racecheck at once (correctness only: nothing here is timed), each with the
      # environment CHECK_ENV (e.g. "TRIRUN_SMALL_CLUSTERS=2 TRIRUN_SMALL_CLUSTER_CHAIN_MIN=0"; default none).
      (env ${CHECK_ENV:-} timeout 200 /tmp/probe check --quick > "$out/check.txt" 2>&1; echo "exit $?" >> "$out/check.txt") &
      c1=$!
      (env ${CHECK_ENV:-} timeout 230 compute-sanitizer --tool memcheck /tmp/probe sanitize 2>&1 | tail -3 > "$out/memcheck.txt") &
      c2=$!
      (env ${CHECK_ENV:-} timeout 230 compute-sanitizer --tool racecheck /tmp/probe sanitize 2>&1 | tail -3 > "$out/racecheck.txt") &
      c3=$!
      wait $c1; wait $c2; wait $c3
      grep -E "FAIL" "$out/check.txt" | head -5; grep -E "^check:|^exit" "$out/check.txt"
      for f in memcheck racecheck; do echo "$f: $(tail -1 "$out/$f.txt")"; done ;;
    objects)
      # A/B of kernel objects compiled here (OBJECTS="name=path name=path ...", paths from the repository root,
      # .o or .o.xz: `nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -DTRIRUN_HAVE_SM90A [-D...]
      # -Isrc/kernel -c src/kernel/trirun.cu`), TriRun only, alternating, two rounds, at MS (default 1,16) on
      # PROBE_SETS (default all); per set and per layer with tools/ab-table.py [--layers].
      names=()
      for spec in ${OBJECTS:?set OBJECTS}; do
        name=${spec%%=*} path=../../${spec#*=}
        case $path in *.xz) xz -dc "$path" > /tmp/obj_$name.o ;; *) cp "$path" /tmp/obj_$name.o ;; esac
        nvcc -O3 -std=c++17 $ARCH -Isrc/kernel tools/kernel-probe.cu /tmp/obj_$name.o -lcublas -o /tmp/probe_$name 2> /dev/null &
        names+=("$name")
      done
      for name in "${names[@]}"; do wait -n || { echo "an object failed to link"; exit 1; }; done
      for r in 1 2; do for name in "${names[@]}"; do echo "--- round $r $name"
        PROBE_TRIRUN_ONLY=1 timeout 150 /tmp/probe_$name launch ${MS:-1,16} 2>&1; done; done > "$out/objects.txt"
      python3 tools/ab-table.py "$out/objects.txt"
      python3 tools/ab-table.py "$out/objects.txt" --layers > "$out/objects-layers.md" ;;
    ab)
      # The small-batch reduction forced one way or the other (TRIRUN_SMALL_REDUCTION: 1 lock chain,
      # 2 last-arriver slots) against the dispatcher's choice, back to back.
      for v in 1 2; do
        nvcc -O3 -std=c++17 $ARCH -DTRIRUN_SMALL_REDUCTION=$v -Isrc/kernel tools/kernel-probe.cu src/kernel/trirun.cu -lcublas -o /tmp/probe_r$v || exit 1
      done
      for v in 1 2; do echo "forced $v: $(timeout 100 /tmp/probe_r$v check --quick 2>&1 | tail -1)"; done | tee "$out/ab-check.txt"
      for p in probe probe_r1 probe_r2; do echo "--- $p"; timeout 150 /tmp/$p speed --quick 2>&1 | grep -v "d2d"; done | tee "$out/ab.txt" ;;
  esac
done

#!/usr/bin/env bash
# Runs on the GPU machine, from the repository root, with .device/ carried
# (built here by `pnpm build && pnpm device:bundle && pnpm --filter @trirun/bench run device:bundle`).
#   bash scripts/device-run.sh check   # API checks, correctness sweep, speed, bundled GPU tests, sanitizers
#   bash scripts/device-run.sh bench   # the benchmark tables (trirun-bench) and the GPTQ GPU benchmark
#   bash scripts/device-run.sh targets # issue #10's sets, g128: interleaved at m = 1..4096, then sustained
#                                      # (--sustain-ms 1500) at m >= 256, where the GPU runs at its power cap
#                                      # (~4 min); `trirun-bench targets interleaved.json sustained.json` here
#   bash scripts/device-run.sh e2e     # decoding steps, FP16 against TriRun (trirun-eval speed): the Llama-2-7B
#                                      # shape at batch 1, 4, 16, 32 (two rounds, with and without clusters),
#                                      # then 13B, TriLM 3.9B and 70B (issue #9)
#   bash scripts/device-run.sh breakdown  # where a step's time goes (speed --breakdown): Llama-2-7B at batch 1
#                                      # and 16 (both formats), BitNet b1.58 2B4T with fp and 8-bit activations,
#                                      # row ops fused and not
#   bash scripts/device-run.sh fused   # the BitNet b1.58 2B4T step with and without the fused row ops
#                                      # (--no-fuse-row-ops / --fuse-row-ops, the default since session 22), fp and
#                                      # 8-bit activations, TriRun only, alternating
# Everything lands in $OUT/device-<part>.tgz plus $OUT/<part>.log.
set -uo pipefail
part=${1:?usage: device-run.sh check|bench|targets|e2e|fused|breakdown}
out=${OUT:-/tmp/out}; work=/tmp/trirun-device/$part
rm -rf "$work"; mkdir -p "$work" "$out"
xz -dc .device/node.xz > /tmp/node && chmod +x /tmp/node
# The addon and the models may travel compressed (the device call carries at most 64 MiB): `xz -k` of
# .device/trirun_native.node, `tar -cJf .device/models.tar.xz -C .device models`. With the tree at ~27 MiB the
# full models (9 MiB compressed) no longer fit beside node.xz; the GPU tests read the token samples only when
# present, so `tar -C .device -cJf .device/models-lite.tar.xz models/stories260K.bin models/stories-student-3M`
# (7 MiB) serves as well.
addon=$PWD/.device/trirun_native.node models=$PWD/.device/models
if [ ! -f "$addon" ] && [ -f "$addon.xz" ]; then xz -dc "$addon.xz" > /tmp/trirun_native.node; addon=/tmp/trirun_native.node; fi
for archive in .device/models.tar.xz .device/models-lite.tar.xz; do
  if [ ! -d "$models" ] && [ -f $archive ]; then
    mkdir -p /tmp/trirun-models && tar -C /tmp/trirun-models -xJf $archive && models=/tmp/trirun-models/models
  fi
done
export TRIRUN_NATIVE_PATH=$addon TRIRUN_SHARED_MODELS=$models
# The tables record the addon's commit (its kernels are what is measured), which may be newer than the bench
# bundle's: the bundle README's first line names it.
addon_commit=$(sed -n 's/^TriRun device check, commit \([^ ,]*\),.*/\1/p' .device/README.txt 2> /dev/null | head -1)
[ -n "$addon_commit" ] && export TRIRUN_COMMIT=$addon_commit
log=$out/$part.log
{
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem --format=csv
  git rev-parse HEAD 2>/dev/null || cat .device/README.txt
  date -u
  case $part in
    check)
      timeout 400 /tmp/node .device/check.mjs --out "$work/check"; echo "check exit $?"
      for tool in memcheck racecheck; do
        timeout 90 compute-sanitizer --tool $tool /tmp/node .device/check.mjs --only sanitize --out "$work/$tool" 2>&1 | tail -5
      done ;;
    bench)
      timeout 420 /tmp/node .device/bench.mjs --out "$work/bench" --time-limit 380; echo "bench exit $?"
      timeout 120 /tmp/node .device/gptq-bench.mjs --gpu-only; echo "gptq bench exit $?" ;;
    targets)
      sets=llama2-70b,llama2-7b,trilm-3.9b
      timeout 120 /tmp/node .device/bench.mjs --models $sets --groupsize 128 --batch 1,16,32,64,128,256,512,1024,2048,4096 \
        --time-limit 100 --no-layers --out "$work/interleaved"; echo "interleaved exit $?"
      # 60 rows x 2 sides x ~1.6 s (session 23, H100: ~3 min).
      timeout 330 /tmp/node .device/bench.mjs --models $sets --groupsize 128 --batch 256,512,1024,2048,4096 \
        --sustain-ms 1500 --time-limit 300 --no-layers --out "$work/sustained"; echo "sustained exit $?" ;;
    e2e)
      # Both sides of a step move by ~5% between machine starts (BENCHMARKS.md): runs on one machine, in one call.
      mkdir -p "$work/e2e"
      # Alternating without and with clustered small-batch launches (TRIRUN_SMALL_CLUSTERS, on by default:
      # kernel-native NOTES.md, session 21; the 7B layers keep the striped schedule on an H100).
      for run in 1 2; do
        for clusters in 0 2; do
          TRIRUN_SMALL_CLUSTERS=$clusters timeout 100 /tmp/node .device/eval-cli.mjs speed --shape llama2-7b \
            --batch 1,4,16,32 --steps 64 --json "$work/e2e/speed-llama2-7b-clusters$clusters-$run.json"
          echo "llama2-7b run $run, TRIRUN_SMALL_CLUSTERS=$clusters, exit $?"
        done
      done
      # (13B took > 80 s on the H100 in session 21: building its FP16 and TriRun weights dominates.)
      for shape in llama2-13b trilm-3.9b; do
        timeout 160 /tmp/node .device/eval-cli.mjs speed --shape $shape --batch 1,16 --steps 32 \
          --json "$work/e2e/speed-$shape.json"; echo "$shape exit $?"
      done
      # FP16 does not fit an 80 GB GPU here (it is reported as skipped); TriRun's tokens/s and memory are.
      timeout 120 /tmp/node .device/eval-cli.mjs speed --shape llama2-70b --batch 1,16 --steps 16 \
        --json "$work/e2e/speed-llama2-70b.json"; echo "llama2-70b exit $?" ;;
    breakdown)
      mkdir -p "$work/breakdown"
      timeout 200 /tmp/node .device/eval-cli.mjs speed --shape llama2-7b --batch 1,16 --steps 32 --breakdown \
        --json "$work/breakdown/breakdown-llama2-7b.json"; echo "llama2-7b exit $?"
      # (Row ops fused, the default since session 22, and not: session 22's unfused int8 `quantize` cost was 15.65 us.)
      for acts in fp int8; do
        for flag in --fuse-row-ops --no-fuse-row-ops; do
          timeout 120 /tmp/node .device/eval-cli.mjs speed --shape bitnet-2b --formats trirun --batch 1 --steps 32 \
            --activations $acts $flag --breakdown --json "$work/breakdown/breakdown-bitnet-2b-$acts-${flag#--}.json"
          echo "bitnet-2b $acts $flag exit $?"
        done
      done ;;
    fused)
      mkdir -p "$work/fused"
      for acts in int8 fp; do
        for flag in --no-fuse-row-ops --fuse-row-ops; do
          timeout 100 /tmp/node .device/eval-cli.mjs speed --shape bitnet-2b --formats trirun --batch 1,16 --steps 32 \
            --activations $acts $flag --json "$work/fused/speed-bitnet-2b-$acts-${flag#--}.json"
          echo "bitnet-2b $acts $flag exit $?"
        done
      done ;;
  esac
} 2>&1 | tee "$log"
tar czf "$out/device-$part.tgz" -C "$work" .

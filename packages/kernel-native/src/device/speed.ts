// Speed of trirunMatmul against cuBLAS FP16 (gemmF16) with cold weights:
// every repetition uses the next of several weight copies whose total size is
// more than 4x the L2 cache, so weights always come from DRAM. Each batch of
// repetitions is queued behind a large device copy, so that the GPU never
// waits for the host between repetitions; events between launches time each
// one; the median is reported.
import { randomFillSync } from "node:crypto";
import { type DeviceInfo, synchronize } from "../device.js";
import { gemmF16, type TrirunConfig, trirunMatmul } from "../matmul.js";
import { Event } from "../stream.js";
import { DeviceTensor } from "../tensor.js";
import { randomActivations, randomScales, type Rng } from "./numeric.js";

export const SPEED_SHAPES_70B: readonly [number, number][] = [
  [8192, 24576],
  [8192, 8192],
  [8192, 43520],
  [21760, 8192],
];
export const TARGET_SPEEDUP = 3.4;

export interface Timing {
  medianUs: number;
  minUs: number;
  meanUs: number;
  reps: number;
  /** Host time to queue one batch vs GPU time of its blocker (blocker should be longer). */
  hostQueueUs: number;
  blockerUs: number;
}

export interface SpeedRow {
  k: number;
  n: number;
  m: number;
  groupsize: number;
  trirun: Timing;
  cublas: Timing;
  config: TrirunConfig;
  speedup: number;
  /** Weight bytes streamed per call / median time. */
  trirunWeightBandwidth: number;
  cublasWeightBandwidth: number;
}

export interface SpeedOptions {
  ms: readonly number[];
  shapes: readonly [number, number][];
  groupsizes: readonly number[];
  reps: number;
  warmup: number;
  device: DeviceInfo;
  log: (line: string) => void;
}

const BATCH = 25;

/** A device copy that keeps the GPU busy while the host queues a batch. */
export class Blocker {
  private readonly src: DeviceTensor;
  private readonly dst: DeviceTensor;
  constructor(bytes: number) {
    this.src = DeviceTensor.zeros("u8", [bytes]);
    this.dst = DeviceTensor.empty("u8", [bytes]);
  }
  run(): void {
    this.dst.copyFrom(this.src);
  }
  dispose(): void {
    this.src.dispose();
    this.dst.dispose();
  }
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Times `launch(i)` (i = repetition index) `reps` times after `warmup` untimed calls. */
export function timeLaunches(
  launch: (i: number) => void,
  reps: number,
  warmup: number,
  blocker: Blocker,
): Timing {
  for (let i = 0; i < warmup; i++) launch(i);
  synchronize();
  const events = Array.from({ length: BATCH + 2 }, () => new Event());
  const times: number[] = [];
  let hostQueue = 0;
  let blockerTime = 0;
  let rep = 0;
  try {
    while (times.length < reps) {
      const count = Math.min(BATCH, reps - times.length);
      events[BATCH + 1].record();
      blocker.run();
      const t0 = performance.now();
      events[0].record();
      for (let i = 0; i < count; i++) {
        launch(rep++);
        events[i + 1].record();
      }
      hostQueue = Math.max(hostQueue, performance.now() - t0);
      events[count].synchronize();
      blockerTime = Math.max(blockerTime, events[0].elapsedMs(events[BATCH + 1]));
      for (let i = 1; i <= count; i++) times.push(events[i].elapsedMs(events[i - 1]) * 1000);
    }
  } finally {
    for (const e of events) e.dispose();
  }
  return {
    medianUs: median(times),
    minUs: Math.min(...times),
    meanUs: times.reduce((a, b) => a + b, 0) / times.length,
    reps: times.length,
    hostQueueUs: hostQueue * 1000,
    blockerUs: blockerTime * 1000,
  };
}

function copiesFor(bytesPerSet: number, l2Bytes: number): number {
  return Math.max(2, Math.ceil((4 * l2Bytes) / bytesPerSet) + 1);
}

/** Fills a tensor with copies of a random fp16 block in [-1, 1) (valid values, cheap to make). */
function fillRandomF16(t: DeviceTensor, block: DeviceTensor): void {
  const flat = t.reshape([t.numel]);
  for (let off = 0; off < t.numel; off += block.numel) {
    const len = Math.min(block.numel, t.numel - off);
    flat.view([len], off).copyFrom(len === block.numel ? block : block.view([len]));
  }
}

export function runSpeed(rng: Rng, o: SpeedOptions): { rows: SpeedRow[]; copyBandwidth: number } {
  const rows: SpeedRow[] = [];
  const blocker = new Blocker(1 << 30);
  const owned: DeviceTensor[] = [];
  try {
    const copyBandwidth = measureCopyBandwidth(blocker);
    o.log(`device-to-device copy: ${(copyBandwidth / 1e12).toFixed(2)} TB/s (bytes read + written)`);
    const block = DeviceTensor.fromArray(randomActivations(rng, 1 << 22), [1 << 22], "f16");
    owned.push(block);
    for (const [k, n] of o.shapes) {
      // cuBLAS weights: fp16 (k, n), rotated.
      const wBytes = k * n * 2;
      const wCopies = copiesFor(wBytes, o.device.l2Bytes);
      const Ws = Array.from({ length: wCopies }, () => {
        const W = DeviceTensor.empty("f16", [k, n]);
        fillRandomF16(W, block);
        return W;
      });
      for (const g of o.groupsizes) {
        const groups = g === -1 ? 1 : k / g;
        const bBytes = (k / 16) * n * 4 + groups * n * 2;
        const tCopies = copiesFor(bBytes, o.device.l2Bytes);
        const words = new Int32Array((k / 16) * n);
        randomFillSync(words); // any 32-bit word is 16 valid codes
        const scales = randomScales(rng, groups * n);
        const Bs: DeviceTensor[] = [];
        const Ss: DeviceTensor[] = [];
        try {
          for (let i = 0; i < tCopies; i++) {
            Bs.push(DeviceTensor.fromArray(words, [k / 16, n], "i32"));
            Ss.push(DeviceTensor.fromArray(scales, [groups, n], "f16"));
          }
          for (const m of o.ms) {
            const A = DeviceTensor.fromArray(randomActivations(rng, m * k), [m, k], "f16");
            const C = DeviceTensor.empty("f16", [m, n]);
            try {
              let config: TrirunConfig | undefined;
              const trirun = timeLaunches(
                (i) => {
                  config = trirunMatmul(A, Bs[i % tCopies], Ss[i % tCopies], C, { groupsize: g });
                },
                o.reps,
                o.warmup,
                blocker,
              );
              const cublas = timeLaunches((i) => gemmF16(A, Ws[i % wCopies], C), o.reps, o.warmup, blocker);
              const row: SpeedRow = {
                k,
                n,
                m,
                groupsize: g,
                trirun,
                cublas,
                config: config!,
                speedup: cublas.medianUs / trirun.medianUs,
                trirunWeightBandwidth: bBytes / (trirun.medianUs * 1e-6),
                cublasWeightBandwidth: wBytes / (cublas.medianUs * 1e-6),
              };
              rows.push(row);
              o.log(
                `speed k=${k} n=${n} g=${g} m=${m}: trirun ${trirun.medianUs.toFixed(1)} us (${row.config.threadK}x${row.config.threadN}), cublas ${cublas.medianUs.toFixed(1)} us, ${row.speedup.toFixed(2)}x`,
              );
            } finally {
              A.dispose();
              C.dispose();
            }
          }
        } finally {
          for (const t of [...Bs, ...Ss]) t.dispose();
        }
      }
      for (const W of Ws) W.dispose();
    }
    return { rows, copyBandwidth };
  } finally {
    for (const t of owned) t.dispose();
    blocker.dispose();
  }
}

function measureCopyBandwidth(blocker: Blocker): number {
  const bytes = 1 << 30;
  const small = new Blocker(1 << 20);
  try {
    const timing = timeLaunches(() => blocker.run(), 20, 3, small);
    return (2 * bytes) / (timing.medianUs * 1e-6);
  } finally {
    small.dispose();
  }
}

/** Per m: times summed over the shapes, and the speedup of the sums. */
export function sumsByM(
  rows: readonly SpeedRow[],
  groupsize: number,
): { m: number; trirunUs: number; cublasUs: number; speedup: number; shapes: number }[] {
  const byM = new Map<number, { trirunUs: number; cublasUs: number; shapes: number }>();
  for (const r of rows) {
    if (r.groupsize !== groupsize) continue;
    const e = byM.get(r.m) ?? { trirunUs: 0, cublasUs: 0, shapes: 0 };
    e.trirunUs += r.trirun.medianUs;
    e.cublasUs += r.cublas.medianUs;
    e.shapes++;
    byM.set(r.m, e);
  }
  return [...byM.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([m, e]) => ({ m, ...e, speedup: e.cublasUs / e.trirunUs }));
}

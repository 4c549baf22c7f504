// CUDA backend overhead: TriRunLinear / Float16Linear forward (with padding and bias handling)
// against the bare kernels on the same padded shapes, timed with CUDA events on one stream.
// Needs a GPU; run after `pnpm build` (or bundled for a device machine):
//   node scripts/bench-gpu.mjs [reps=50]
import {
  available,
  DeviceTensor,
  Event,
  gemmF16,
  Stream,
  trirunMatmul,
  unavailableReason,
} from "@trirun/kernel-native";
import { Float16Linear, TriRunLinear } from "../dist/index.js";

if (!available()) {
  console.log(`no CUDA device: ${unavailableReason()}`);
  process.exit(2);
}
const reps = Number(process.argv[2] ?? 50);
const shapes = [
  [64, 172],
  [172, 64],
  [256, 768],
  [4096, 4096],
  [4096, 11008],
  [11008, 4096],
];
const tokenCounts = [1, 16, 256];
const stream = new Stream();
const start = new Event();
const stop = new Event();

function time(fn) {
  for (let i = 0; i < 3; i++) fn();
  start.record(stream);
  for (let i = 0; i < reps; i++) fn();
  stop.record(stream);
  stop.synchronize();
  return (stop.elapsedMs(start) * 1000) / reps;
}

function randomQuantized(inF, outF) {
  const codes = new Uint8Array(inF * outF);
  for (let i = 0; i < codes.length; i++) codes[i] = (Math.random() * 3) | 0;
  const scales = new Uint16Array(Math.ceil(inF / 128) * outF).fill(0x2000);
  return { codes, scales, groupsize: 128, inFeatures: inF, outFeatures: outF };
}

const rows = [];
for (const [inF, outF] of shapes) {
  const q = randomQuantized(inF, outF);
  const tri = TriRunLinear.fromQuantized(q, { backend: "cuda" });
  const triBias = TriRunLinear.fromQuantized(
    { ...q, bias: new Float32Array(outF).fill(0.5) },
    { backend: "cuda" },
  );
  const w = new Uint16Array(inF * outF).fill(0x2000);
  const f16 = Float16Linear.fromWeights(w, outF, inF, undefined, { backend: "cuda" });
  const k = Math.ceil(inF / 128) * 128;
  const n = Math.ceil(outF / 256) * 256;
  const B = DeviceTensor.zeros("i32", [k / 16, n]);
  const s = DeviceTensor.zeros("f16", [k / 128, n]);
  const W = DeviceTensor.zeros("f16", [outF, inF]);
  for (const m of tokenCounts) {
    const x = DeviceTensor.zeros("f16", [m, inF]);
    const y = DeviceTensor.zeros("f16", [m, outF]);
    const A = DeviceTensor.zeros("f16", [m, k]);
    const C = DeviceTensor.zeros("f16", [m, n]);
    const row = {
      in: inF,
      out: outF,
      tokens: m,
      kernelUs: time(() => trirunMatmul(A, B, s, C, { stream })),
      triRunLinearUs: time(() => tri.forward(x, { out: y, stream })),
      triRunLinearBiasUs: time(() => triBias.forward(x, { out: y, stream })),
      gemmF16Us: time(() => gemmF16(x, W, y, { transposeW: true, stream })),
      float16LinearUs: time(() => f16.forward(x, { out: y, stream })),
    };
    rows.push(row);
    console.log(
      `${inF}x${outF} m=${m}: kernel ${row.kernelUs.toFixed(1)} us, TriRunLinear ${row.triRunLinearUs.toFixed(1)} us (bias ${row.triRunLinearBiasUs.toFixed(1)}), gemmF16 ${row.gemmF16Us.toFixed(1)} us, Float16Linear ${row.float16LinearUs.toFixed(1)} us`,
    );
    for (const t of [x, y, A, C]) t.dispose();
  }
  for (const t of [B, s, W]) t.dispose();
  for (const l of [tri, triBias, f16]) l.dispose();
}
if (process.env.OUT) {
  const { writeFileSync } = await import("node:fs");
  writeFileSync(`${process.env.OUT}/layers-bench.json`, JSON.stringify({ reps, rows }, null, 1));
}

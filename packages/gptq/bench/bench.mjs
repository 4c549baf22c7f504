// Benchmark of @trirun/gptq (run `pnpm --filter @trirun/gptq bench`, which builds first).
//   CPU: a 1024 x 1024 layer, 2048 calibration tokens.
//   GPU: a 4096 x 4096 layer, 128 x 2048 calibration tokens (only where a CUDA device is present).
// Options: --cpu-only, --gpu-only, --threads N.
import { availableParallelism, cpus } from "node:os";
import { GPTQ, probeKernelNative } from "../dist/index.js";

const args = process.argv.slice(2);
const threadsArg = args.indexOf("--threads");
const threads = threadsArg >= 0 ? Number(args[threadsArg + 1]) : undefined;

/** Cheap correlated activations: per-feature scales plus a shared rank-8 component. */
function makeBatch(seed, tokens, n) {
  let s = seed >>> 0;
  const uniform = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296 - 0.5;
  };
  const rank = 8;
  const mix = new Float32Array(rank * n).map(() => uniform() * 2);
  const scale = new Float32Array(n).map(() => 0.2 + 2 * (uniform() + 0.5) ** 2);
  const x = new Float32Array(tokens * n);
  const y = new Float32Array(rank);
  for (let t = 0; t < tokens; t++) {
    for (let r = 0; r < rank; r++) y[r] = uniform() * 3;
    for (let i = 0; i < n; i++) {
      let v = uniform() * scale[i];
      for (let r = 0; r < rank; r++) v += y[r] * mix[r * n + i];
      x[t * n + i] = v;
    }
  }
  return x;
}

function makeWeight(seed, out, n) {
  const x = makeBatch(seed, out, n);
  for (let i = 0; i < x.length; i++) x[i] *= 0.01;
  return x;
}

async function run(label, backend, n, out, batches, tokensPerBatch, distinctBatches) {
  const gptq = new GPTQ(n, { backend, threads });
  const data = Array.from({ length: distinctBatches }, (_, k) => makeBatch(1000 + k, tokensPerBatch, n));
  const weight = makeWeight(7, out, n);
  const t0 = performance.now();
  for (let b = 0; b < batches; b++) await gptq.addBatch(data[b % distinctBatches], tokensPerBatch);
  await gptq.hessian(); // flushes device sums
  const t1 = performance.now();
  const r = await gptq.quantize(weight, { groupsize: 128 });
  const t2 = performance.now();
  await gptq.dispose();
  const line = {
    label,
    backend: r.backend,
    shape: `${out}x${n}`,
    tokens: batches * tokensPerBatch,
    hessianS: +((t1 - t0) / 1000).toFixed(2),
    factorS: +(r.timings.factorMs / 1000).toFixed(2),
    sweepS: +(r.timings.sweepMs / 1000).toFixed(2),
    quantizeS: +((t2 - t1) / 1000).toFixed(2),
    totalS: +((t2 - t0) / 1000).toFixed(2),
    damp: r.damp,
  };
  console.log(JSON.stringify(line));
  return line;
}

const cores = typeof availableParallelism === "function" ? availableParallelism() : cpus().length;
console.log(
  `# node ${process.version}, ${cores} cores (${cpus()[0]?.model ?? "unknown CPU"}), threads ${threads ?? "default"}`,
);

if (!args.includes("--gpu-only")) {
  await run("cpu 1024x1024, 2048 tokens", "cpu", 1024, 1024, 4, 512, 4);
}
if (!args.includes("--cpu-only")) {
  const { native, reason } = await probeKernelNative();
  if (!native) {
    console.log(`# GPU variant skipped: ${reason}`);
  } else {
    await run("cuda 4096x4096, 128x2048 tokens", "cuda", 4096, 4096, 128, 2048, 8);
  }
}

// Benchmark (not a test): quantize+pack throughput of an 8192 x 28672 layer, and a whole-checkpoint
// conversion with its peak memory. Run: pnpm --filter @trirun/packing bench [-- --quick]
// Reports wall-clock and CPU-time rates: on a shared machine the CPU-time rate is the one-core figure.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { packWeights, quantize, quantizePacked } from "../dist/index.js";
import { packCheckpoint, SafetensorsFileWriter } from "../dist/node.js";

const quick = process.argv.includes("--quick");
const cpuSeconds = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

/** fp16 bits of roughly normal weights (std ~0.02), from a fast LCG: no per-element fp16 rounding cost. */
function randomF16(count, seed = 1) {
  const out = new Uint16Array(count);
  let x = seed >>> 0;
  for (let i = 0; i < count; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    // exponent 7..13 (about 2^-8 .. 2^-2), random mantissa and sign
    const e = 7 + ((x >>> 4) % 7);
    out[i] = (x & 0x8000) | (e << 10) | ((x >>> 16) & 0x3ff);
  }
  return out;
}

function time(fn) {
  const c = cpuSeconds();
  const t = performance.now();
  const result = fn();
  return { result, wall: (performance.now() - t) / 1000, cpu: cpuSeconds() - c };
}

function layerBench() {
  const k = 8192;
  const n = quick ? 4096 : 28672;
  const weights = k * n;
  const data = randomF16(weights);
  const weight = { data, dtype: "F16", outFeatures: n, inFeatures: k };
  const rows = [];
  const report = (what, t, count = weights) =>
    rows.push({
      what,
      wall_s: +t.wall.toFixed(3),
      "M weights/s (wall)": +(count / t.wall / 1e6).toFixed(1),
      "M weights/s (cpu)": +(count / t.cpu / 1e6).toFixed(1),
    });
  for (const method of ["absmean", "absmax"]) {
    for (let rep = 0; rep < 3; rep++)
      report(
        `quantizePacked ${method} g128 #${rep + 1}`,
        time(() => quantizePacked(weight, { method, groupsize: 128 })),
      );
  }
  report(
    "quantizePacked absmean g-1",
    time(() => quantizePacked(weight, { method: "absmean", groupsize: -1 })),
  );
  const q = time(() => quantize(weight, { method: "absmean", groupsize: 128 }));
  report("quantize absmean g128 (codes matrix)", q);
  report(
    "packWeights (codes -> B)",
    time(() => packWeights(q.result.codes, k, n)),
  );
  // mse rates 80 scales per group: measured on a slice.
  const slice = { data: data.subarray(0, 1024 * k), dtype: "F16", outFeatures: 1024, inFeatures: k };
  for (const groupsize of [128, -1])
    report(
      `quantizePacked mse g${groupsize} (1024 x 8192 slice)`,
      time(() => quantizePacked(slice, { method: "mse", groupsize })),
      1024 * k,
    );
  console.log(`layer in=${k} out=${n} (fp16 input), node ${process.version}`);
  console.table(rows);
}

async function writeSyntheticModel(dir, hidden, inter, layers) {
  const specs = [];
  const add = (name, shape) => specs.push({ name, dtype: "F16", shape });
  add("model.embed_tokens.weight", [32000, hidden]);
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}`;
    add(`${p}.input_layernorm.weight`, [hidden]);
    for (const q of ["q", "k", "v", "o"]) add(`${p}.self_attn.${q}_proj.weight`, [hidden, hidden]);
    add(`${p}.post_attention_layernorm.weight`, [hidden]);
    add(`${p}.mlp.gate_proj.weight`, [inter, hidden]);
    add(`${p}.mlp.up_proj.weight`, [inter, hidden]);
    add(`${p}.mlp.down_proj.weight`, [hidden, inter]);
  }
  add("model.norm.weight", [hidden]);
  add("lm_head.weight", [32000, hidden]);
  const path = join(dir, "model.safetensors");
  const writer = await SafetensorsFileWriter.create(path, specs, { format: "pt" });
  let seed = 7;
  for (const s of specs)
    await writer.write(
      s.name,
      randomF16(
        s.shape.reduce((a, d) => a * d, 1),
        seed++,
      ),
    );
  await writer.close();
  return statSync(path).size;
}

async function checkpointChild(input, output) {
  const c = cpuSeconds();
  const summary = await packCheckpoint(input, output, { method: "absmean", groupsize: 128 });
  const cpu = cpuSeconds() - c;
  console.log(
    JSON.stringify({
      seconds: summary.seconds,
      cpu,
      weights: summary.weights,
      bytesBefore: summary.bytesBefore,
      bytesAfter: summary.bytesAfter,
      maxRssMiB: process.resourceUsage().maxRSS / 1024,
    }),
  );
}

async function checkpointBench() {
  const [hidden, inter, layers] = quick ? [1024, 2816, 2] : [2048, 5632, 4];
  const dir = mkdtempSync(join(tmpdir(), "trirun-bench-"));
  try {
    const size = await writeSyntheticModel(join(dir), hidden, inter, layers);
    // Convert in a fresh process so that its peak RSS is the conversion's own.
    const child = spawnSync(
      process.execPath,
      [fileURLToPath(import.meta.url), "--child", dir, join(dir, "out")],
      { encoding: "utf8" },
    );
    if (child.status !== 0) throw new Error(child.stderr);
    const r = JSON.parse(child.stdout.trim().split("\n").at(-1));
    console.log(
      `checkpoint: hidden ${hidden}, MLP ${inter}, ${layers} layers, ${(size / 2 ** 20).toFixed(0)} MiB fp16 file`,
    );
    console.table([
      {
        "packed M weights": +(r.weights / 1e6).toFixed(1),
        wall_s: +r.seconds.toFixed(2),
        "M weights/s (wall)": +(r.weights / r.seconds / 1e6).toFixed(1),
        "M weights/s (cpu)": +(r.weights / r.cpu / 1e6).toFixed(1),
        "tensor MiB before": +(r.bytesBefore / 2 ** 20).toFixed(1),
        "tensor MiB after": +(r.bytesAfter / 2 ** 20).toFixed(1),
        "peak RSS MiB": +r.maxRssMiB.toFixed(0),
      },
    ]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === "--child") {
  await checkpointChild(process.argv[3], process.argv[4]);
} else {
  console.log(
    `${new Date().toISOString()} load average ${(await import("node:os"))
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")}`,
  );
  layerBench();
  await checkpointBench();
}

// CPU backend speed on the stories-student-3M shapes (4 layers: q, k, v, o 256x256; gate, up
// 256->768; down 768->256) for a few hundred tokens. Run after `pnpm build`:
//   node scripts/bench-cpu.mjs [tokens=300] [reps=3]
import { Float16Linear, hostTensor, TriRunLinear } from "../dist/index.js";

const tokens = Number(process.argv[2] ?? 300);
const reps = Number(process.argv[3] ?? 3);
const shapes = [...Array(4).fill([256, 256]), [256, 768], [256, 768], [768, 256]];
const layerShapes = Array(4).fill(shapes).flat();

function randomWeights(n) {
  const w = new Float32Array(n);
  for (let i = 0; i < n; i++) w[i] = (Math.random() - 0.5) * 0.1;
  return w;
}

const f16 = layerShapes.map(([i, o]) =>
  Float16Linear.fromWeights(randomWeights(i * o), o, i, undefined, { backend: "cpu" }),
);
const tri = f16.map((l) => TriRunLinear.quantize(l, "absmean", 128));
const params = layerShapes.reduce((a, [i, o]) => a + i * o, 0);
const inputs = new Map();
for (const [i] of layerShapes)
  if (!inputs.has(i)) inputs.set(i, hostTensor([tokens, i], randomWeights(tokens * i)));

for (const [name, layers] of [
  ["Float16Linear", f16],
  ["TriRunLinear", tri],
]) {
  let best = Number.POSITIVE_INFINITY;
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    for (const layer of layers) layer.forward(inputs.get(layer.inFeatures));
    best = Math.min(best, performance.now() - t0);
  }
  const gflops = (2 * params * tokens) / (best * 1e6);
  console.log(
    `${name} cpu: ${layers.length} linears, ${(params / 1e6).toFixed(2)}M weights, ${tokens} tokens: ${best.toFixed(0)} ms (${gflops.toFixed(2)} GFLOP/s, best of ${reps})`,
  );
}

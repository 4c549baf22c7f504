// Runnable: `pnpm --filter @trirun/layers build && node packages/layers/examples/replace-and-run.mjs`
import { Float16Linear, hostTensor, replaceLinear } from "@trirun/layers";

// A "model": any plain object graph of layers (objects, arrays, Maps).
const random = (n) => Float32Array.from({ length: n }, () => (Math.random() - 0.5) * 0.1);
const model = {
  layers: [
    {
      up: Float16Linear.fromWeights(random(172 * 64), 172, 64),
      down: Float16Linear.fromWeights(random(64 * 172), 64, 172),
    },
  ],
  head: Float16Linear.fromWeights(random(512 * 64), 512, 64),
};

// Quantize every linear except the head to ternary weights, 128 inputs per scale.
const replaced = replaceLinear(model, {
  filter: (path) => path !== "head",
  groupsize: 128,
  quantizer: "absmean",
});
for (const r of replaced) console.log(`${r.path}: ${r.layer.backend}, ${r.layer.byteLength} bytes`);

// x: (batch, tokens, in) -> (batch, tokens, out). On a GPU machine this runs the CUDA kernel
// (fp16 round trip for host tensors; pass f16 DeviceTensors to stay on the device).
const x = hostTensor([2, 3, 64], random(2 * 3 * 64));
const h = model.layers[0].up.forward(x); // (2, 3, 172)
const y = model.layers[0].down.forward(h); // (2, 3, 64)
console.log(y.shape, Array.from(y.data.slice(0, 4)));
console.log("dequantized up weights:", model.layers[0].up.dequantize().length);

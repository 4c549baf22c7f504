import { Float16Linear, TriRunLinear } from "@trirun/layers";
import { encodeF16 } from "@trirun/packing";
import { seededRandom } from "../data/sampling.js";
import type { LlamaConfig } from "../model/config.js";
import { BLOCK_LINEARS, type BlockLinearName, type LlamaBlock, type LlamaModel } from "../model/llama.js";
import type { ModelLinear } from "../model/linear.js";
import { blockLinearShapes, type WeightFormat } from "./shapes.js";

const roundUp = (v: number, m: number) => Math.ceil(v / m) * m;

function uniform(n: number, amplitude: number, random: () => number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (2 * random() - 1) * amplitude;
  return out;
}

/**
 * A model of `config`'s shapes with seeded random weights, every linear on the CUDA backend: block
 * linears as Float16Linear (cuBLAS) or TriRunLinear (2-bit codes, fp16 scales per 128 inputs), the
 * classifier Float16Linear in both. Each distinct layer shape draws its weights once and every layer of
 * that shape gets its own device copy of them: the speed does not depend on the values, the memory is
 * that of a real model, and the host work stays small.
 */
export function randomCudaModel(config: LlamaConfig, format: WeightFormat, seed: number): LlamaModel {
  const random = seededRandom(seed);
  const made: ModelLinear[] = [];
  const fp16Bits = new Map<string, Uint16Array>();
  const packed = new Map<string, { B: Int32Array; s: Uint16Array }>();
  const linear = (out: number, inp: number): ModelLinear => {
    const key = `${out}x${inp}`;
    let layer: ModelLinear;
    if (format === "fp16") {
      let bits = fp16Bits.get(key);
      if (bits === undefined) {
        bits = encodeF16(uniform(out * inp, 1 / Math.sqrt(inp), random));
        fp16Bits.set(key, bits);
      }
      layer = Float16Linear.fromWeights(bits, out, inp, undefined, { backend: "cuda" });
    } else {
      const k = roundUp(inp, 128);
      const n = roundUp(out, 256);
      let p = packed.get(key);
      if (p === undefined) {
        // Any 32-bit word is 16 valid 2-bit codes.
        const B = new Int32Array((k / 16) * n);
        for (let i = 0; i < B.length; i++) B[i] = (random() * 2 ** 32) | 0;
        const s = encodeF16(
          // Random signs: codes {-1, 0, 1, 2} have mean 1/2, so scales of one sign would add a bias to
          // every output that grows layer by layer until fp16 overflows.
          Float32Array.from(
            { length: (k / 128) * n },
            () => ((random() < 0.5 ? -1 : 1) * (0.5 + random())) / Math.sqrt(inp),
          ),
        );
        p = { B, s };
        packed.set(key, p);
      }
      layer = TriRunLinear.fromPacked(
        { ...p, k, n, groupsize: 128, inFeatures: inp, outFeatures: out },
        { backend: "cuda" },
      );
    }
    made.push(layer);
    return layer;
  };
  try {
    const shapes = blockLinearShapes(config);
    const blocks: LlamaBlock[] = Array.from({ length: config.nLayers }, () => {
      const linears = {} as Record<BlockLinearName, ModelLinear>;
      BLOCK_LINEARS.forEach((name, i) => {
        linears[name] = linear(shapes[i][0], shapes[i][1]);
      });
      const block: LlamaBlock = {
        attnNorm: new Float32Array(config.dim).fill(1),
        ffnNorm: new Float32Array(config.dim).fill(1),
        linears,
      };
      if (config.subNorms) {
        block.attnSubNorm = new Float32Array(config.dim).fill(1);
        block.ffnSubNorm = new Float32Array(config.hiddenDim).fill(1);
      }
      return block;
    });
    const classifier = Float16Linear.fromWeights(
      encodeF16(uniform(config.vocabSize * config.dim, 1 / Math.sqrt(config.dim), random)),
      config.vocabSize,
      config.dim,
      undefined,
      { backend: "cuda" },
    );
    made.push(classifier);
    return {
      config,
      embedding: uniform(config.vocabSize * config.dim, 1, random),
      blocks,
      finalNorm: new Float32Array(config.dim).fill(1),
      classifier,
      source: `random weights (seed ${seed})`,
    };
  } catch (error) {
    for (const layer of made) layer.dispose();
    throw error;
  }
}

import type { HostTensor, ModelLinear } from "../linear.js";

/** Builds the module for one unquantized linear layer from its (out, in) fp32 weight. */
export type LinearFactory = (
  path: string,
  weight: Float32Array,
  outFeatures: number,
  inFeatures: number,
) => ModelLinear;

// TEMPORARY until @trirun/layers lands: plain fp32 host linear.
class TempLinear implements ModelLinear {
  readonly kind = "float16";
  readonly byteLength: number;
  constructor(
    readonly weight: Float32Array,
    readonly outFeatures: number,
    readonly inFeatures: number,
  ) {
    this.byteLength = weight.byteLength;
  }
  forward(x: HostTensor): HostTensor {
    const rows = x.data.length / this.inFeatures;
    const out = new Float32Array(rows * this.outFeatures);
    for (let r = 0; r < rows; r++) {
      for (let o = 0; o < this.outFeatures; o++) {
        let s = 0;
        for (let i = 0; i < this.inFeatures; i++)
          s += x.data[r * this.inFeatures + i] * this.weight[o * this.inFeatures + i];
        out[r * this.outFeatures + o] = s;
      }
    }
    return { data: out, shape: [rows, this.outFeatures] };
  }
  dispose(): void {}
}

export const defaultLinearFactory: LinearFactory = (_path, weight, outFeatures, inFeatures) =>
  new TempLinear(weight.slice(), outFeatures, inFeatures);

/** Quantized weights of one linear layer in natural order (codes (in, out), fp16 scales (in/g, out)). */
export interface QuantizedLayerWeights {
  codes: Uint8Array;
  scales: Uint16Array;
  groupsize: 128 | -1;
  inFeatures: number;
  outFeatures: number;
}

function f16ToNumber(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

// TEMPORARY until @trirun/layers lands.
export function quantizedLinear(q: QuantizedLayerWeights): ModelLinear {
  const { inFeatures: k, outFeatures: n } = q;
  const g = q.groupsize === -1 ? k : q.groupsize;
  const w = new Float32Array(n * k);
  for (let i = 0; i < k; i++) {
    for (let o = 0; o < n; o++)
      w[o * k + i] = (q.codes[i * n + o] - 1) * f16ToNumber(q.scales[Math.floor(i / g) * n + o]);
  }
  return new TempLinear(w, n, k);
}

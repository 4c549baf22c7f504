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

import { headSize, kvDim } from "./config.js";
import {
  addInPlace,
  causalAttention,
  embed,
  quantizeRows,
  RopeTable,
  relu2Mul,
  rmsNorm,
  swiGlu,
} from "./cpu-ops.js";
import { forwardHost } from "./linear.js";
import { type BlockLinearName, type LlamaModel, linearPath } from "./llama.js";
import type { ForwardOptions, KvCache, LlamaRuntime } from "./runtime.js";

/** Sees the input of every linear layer as it runs (rows, inFeatures); used for GPTQ calibration. */
export type LinearInputObserver = (path: string, input: Float32Array, rows: number) => void;

export class CpuKvCache implements KvCache {
  length = 0;
  readonly keys: Float32Array[];
  readonly values: Float32Array[];

  constructor(
    layers: number,
    readonly capacity: number,
    private readonly width: number,
  ) {
    this.keys = Array.from({ length: layers }, () => new Float32Array(capacity * width));
    this.values = Array.from({ length: layers }, () => new Float32Array(capacity * width));
  }

  reset(): void {
    this.length = 0;
  }

  store(layer: number, pos0: number, k: Float32Array, v: Float32Array): void {
    this.keys[layer].set(k, pos0 * this.width);
    this.values[layer].set(v, pos0 * this.width);
  }
}

/** fp32 forward pass on the host; linear layers run through their own (CPU) backend. */
export class CpuLlamaRuntime implements LlamaRuntime {
  readonly backend = "cpu" as const;
  observer: LinearInputObserver | undefined;
  private readonly rope: RopeTable;

  constructor(readonly model: LlamaModel) {
    this.rope = new RopeTable(headSize(model.config), model.config.ropeTheta);
  }

  newCache(): KvCache {
    const c = this.model.config;
    return new CpuKvCache(c.nLayers, c.maxSeqLen, kvDim(c));
  }

  embed(tokens: ArrayLike<number>): Float32Array {
    const c = this.model.config;
    return embed(this.model.embedding, c.dim, c.vocabSize, tokens);
  }

  private linear(layer: number, name: BlockLinearName, x: Float32Array, rows: number): Float32Array {
    const path = linearPath(layer, name);
    this.observer?.(path, x, rows);
    return forwardHost(this.model.blocks[layer].linears[name], x, rows, path);
  }

  /** A linear layer's input as the model quantizes it (config.activationBits), else as it is. */
  private linearInput(x: Float32Array, rows: number, width: number): Float32Array {
    const bits = this.model.config.activationBits;
    return bits === undefined ? x : quantizeRows(x, rows, width, bits);
  }

  // The stages of one decoder block, exposed separately so that calibration can compute each layer's
  // input once (see quantize/sequential.ts). blockForward composes them. Each stage that feeds linear
  // layers returns their input, activation quantization included.

  /** RMSNorm before attention: the input of q/k/v. */
  attnNormed(layer: number, x: Float32Array, rows: number): Float32Array {
    const c = this.model.config;
    return this.linearInput(
      rmsNorm(x, rows, c.dim, this.model.blocks[layer].attnNorm, c.normEps),
      rows,
      c.dim,
    );
  }

  /** q/k/v projections, RoPE, causal attention (and BitNet's sub-norm): the input of o_proj (rows, dim). */
  attention(layer: number, h: Float32Array, rows: number, cache?: CpuKvCache): Float32Array {
    const c = this.model.config;
    const pos0 = cache ? cache.length : 0;
    const q = this.linear(layer, "self_attn.q_proj", h, rows);
    const k = this.linear(layer, "self_attn.k_proj", h, rows);
    const v = this.linear(layer, "self_attn.v_proj", h, rows);
    this.rope.apply(q, rows, c.nHeads, pos0, c.ropeStyle);
    this.rope.apply(k, rows, c.nKvHeads, pos0, c.ropeStyle);
    let keys = k;
    let values = v;
    if (cache) {
      cache.store(layer, pos0, k, v);
      keys = cache.keys[layer];
      values = cache.values[layer];
    }
    const shape = { nHeads: c.nHeads, nKvHeads: c.nKvHeads, headSize: headSize(c) };
    const att = causalAttention(q, rows, pos0, keys, values, shape);
    const subNorm = this.model.blocks[layer].attnSubNorm;
    return this.linearInput(subNorm ? rmsNorm(att, rows, c.dim, subNorm, c.normEps) : att, rows, c.dim);
  }

  /** x + o_proj(att). */
  attentionResidual(layer: number, x: Float32Array, att: Float32Array, rows: number): Float32Array {
    const out = x.slice();
    addInPlace(out, this.linear(layer, "self_attn.o_proj", att, rows));
    return out;
  }

  /** RMSNorm before the MLP: the input of gate/up. */
  ffnNormed(layer: number, x: Float32Array, rows: number): Float32Array {
    const c = this.model.config;
    return this.linearInput(
      rmsNorm(x, rows, c.dim, this.model.blocks[layer].ffnNorm, c.normEps),
      rows,
      c.dim,
    );
  }

  /** act(gate(h)) * up(h) (and BitNet's sub-norm): the input of down_proj. */
  mlpActivation(layer: number, h: Float32Array, rows: number): Float32Array {
    const c = this.model.config;
    const gate = this.linear(layer, "mlp.gate_proj", h, rows);
    const up = this.linear(layer, "mlp.up_proj", h, rows);
    const a = c.mlpActivation === "relu2" ? relu2Mul(gate, up) : swiGlu(gate, up);
    const subNorm = this.model.blocks[layer].ffnSubNorm;
    return this.linearInput(
      subNorm ? rmsNorm(a, rows, c.hiddenDim, subNorm, c.normEps) : a,
      rows,
      c.hiddenDim,
    );
  }

  /** x + down_proj(a). */
  mlpResidual(layer: number, x: Float32Array, a: Float32Array, rows: number): Float32Array {
    const out = x.slice();
    addInPlace(out, this.linear(layer, "mlp.down_proj", a, rows));
    return out;
  }

  /**
   * One decoder block on hidden states x (rows, dim) at positions pos0..; returns the new hidden states.
   * Without a cache the rows attend only to each other (positions from 0).
   */
  blockForward(layer: number, x: Float32Array, rows: number, cache?: CpuKvCache): Float32Array {
    const att = this.attention(layer, this.attnNormed(layer, x, rows), rows, cache);
    const x1 = this.attentionResidual(layer, x, att, rows);
    return this.mlpResidual(
      layer,
      x1,
      this.mlpActivation(layer, this.ffnNormed(layer, x1, rows), rows),
      rows,
    );
  }

  /** Final norm and classifier on hidden states (rows, dim). */
  head(x: Float32Array, rows: number): Float32Array {
    const c = this.model.config;
    const h = rmsNorm(x, rows, c.dim, this.model.finalNorm, c.normEps);
    return forwardHost(this.model.classifier, h, rows, "lm_head");
  }

  forward(tokens: ArrayLike<number>, cache?: KvCache, opts: ForwardOptions = {}): Float32Array {
    const c = this.model.config;
    if (cache !== undefined && !(cache instanceof CpuKvCache)) {
      throw new TypeError("cache: expected a cache made by this runtime's newCache()");
    }
    const rows = tokens.length;
    if (rows === 0) throw new RangeError("tokens: expected at least one token");
    const pos0 = cache ? cache.length : 0;
    if (pos0 + rows > c.maxSeqLen) {
      throw new RangeError(
        `tokens: positions up to ${pos0 + rows} exceed the model's maxSeqLen ${c.maxSeqLen}`,
      );
    }
    let x = this.embed(tokens);
    for (let layer = 0; layer < c.nLayers; layer++) x = this.blockForward(layer, x, rows, cache);
    if (cache) cache.length = pos0 + rows;
    if (opts.lastOnly) return this.head(x.subarray((rows - 1) * c.dim), 1);
    return this.head(x, rows);
  }

  dispose(): void {}
}

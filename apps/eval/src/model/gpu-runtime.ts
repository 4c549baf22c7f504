import {
  available,
  type CudaGraph,
  captureGraph,
  DeviceTensor,
  OPS_MAX_HEAD_DIM,
  ops,
  synchronize,
  unavailableReason,
} from "@trirun/kernel-native";
import { Float16Linear, type Linear, TriRunLinear } from "@trirun/layers";
import { decodeF16, encodeF16 } from "@trirun/packing";
import { headSize, kvDim } from "./config.js";
import { type LlamaModel, listLinears } from "./llama.js";
import type { ForwardOptions, KvCache, LlamaRuntime } from "./runtime.js";

/** Activation buffers grow in steps of this many rows, so that windows of varying length reuse them. */
const ROW_STEP = 64;

/** Thrown when the CUDA runtime is asked for but cannot run here. */
export class CudaRuntimeUnavailableError extends Error {
  readonly code = "ERR_NO_CUDA_RUNTIME";
  constructor(message: string) {
    super(message);
    this.name = "CudaRuntimeUnavailableError";
  }
}

/** Checks that every linear layer of `model` runs on the CUDA backend (their forward then stays on the device). */
/**
 * Why the CUDA runtime cannot run a model's block, or undefined when it can: the Llama block, and
 * BitNet b1.58's (sub-norms and a relu2 gate).
 */
export function cudaBlockUnsupported(model: LlamaModel): string | undefined {
  const c = model.config;
  if (c.mlpActivation !== "silu" && c.mlpActivation !== "relu2") {
    return `the CUDA runtime has no ${String(c.mlpActivation)} MLP gate`;
  }
  const missing = model.blocks.findIndex(
    (b) => c.subNorms && (b.attnSubNorm === undefined || b.ffnSubNorm === undefined),
  );
  if (missing >= 0) return `block ${missing}: the config has sub-norms but the block has no sub-norm weights`;
  return undefined;
}

export function checkCudaLayers(model: LlamaModel): void {
  const unsupported = cudaBlockUnsupported(model);
  if (unsupported !== undefined) throw new TypeError(`${unsupported} (--runtime cpu)`);
  for (const { path, layer } of listLinears(model)) {
    if (layer.backend !== "cuda") {
      throw new TypeError(
        `${path}: the CUDA runtime needs linear layers on the "cuda" backend, got "${layer.backend}" (load the model with backend "cuda")`,
      );
    }
  }
}

/** Token ids as i32, each checked against the vocabulary (the device gather would give NaN rows instead). */
export function tokenIds(tokens: ArrayLike<number>, vocab: number): Int32Array {
  const ids = new Int32Array(tokens.length);
  for (let t = 0; t < tokens.length; t++) {
    const id = tokens[t];
    if (!Number.isInteger(id) || id < 0 || id >= vocab) {
      throw new RangeError(`tokens[${t}] = ${id} is outside the vocabulary [0, ${vocab})`);
    }
    ids[t] = id;
  }
  return ids;
}

/** Keys and values of every layer on the device: (capacity, kvDim) f16 per layer. */
export class CudaKvCache implements KvCache {
  length = 0;
  readonly keys: DeviceTensor[];
  readonly values: DeviceTensor[];

  constructor(
    layers: number,
    readonly capacity: number,
    width: number,
  ) {
    this.keys = [];
    this.values = [];
    try {
      for (let l = 0; l < layers; l++) {
        this.keys.push(DeviceTensor.empty("f16", [capacity, width]));
        this.values.push(DeviceTensor.empty("f16", [capacity, width]));
      }
    } catch (error) {
      this.dispose();
      throw error;
    }
  }

  reset(): void {
    this.length = 0;
  }

  /** Device bytes held by the cache. */
  get byteLength(): number {
    return [...this.keys, ...this.values].reduce((s, t) => s + t.byteLength, 0);
  }

  dispose(): void {
    for (const t of [...this.keys, ...this.values]) t.dispose();
  }
}

/**
 * Keys and values of `batch` sequences decoded together: (batch, capacity, kvDim) f16 per layer, the
 * layout of the batched decode attention kernel (one launch per layer for the whole batch).
 */
export class CudaBatchKvCache {
  /** Positions stored per sequence. */
  readonly lengths: number[];
  readonly keys: DeviceTensor[] = [];
  readonly values: DeviceTensor[] = [];

  constructor(
    layers: number,
    readonly batch: number,
    readonly capacity: number,
    width: number,
  ) {
    this.lengths = new Array<number>(batch).fill(0);
    try {
      for (let l = 0; l < layers; l++) {
        this.keys.push(DeviceTensor.empty("f16", [batch, capacity, width]));
        this.values.push(DeviceTensor.empty("f16", [batch, capacity, width]));
      }
    } catch (error) {
      this.dispose();
      throw error;
    }
  }

  reset(): void {
    this.lengths.fill(0);
  }

  get byteLength(): number {
    return [...this.keys, ...this.values].reduce((s, t) => s + t.byteLength, 0);
  }

  /** Called on dispose (a runtime drops the step graph it keeps for this cache). @internal */
  readonly onDispose = new Set<() => void>();

  dispose(): void {
    for (const hook of this.onDispose) hook();
    this.onDispose.clear();
    for (const t of [...this.keys, ...this.values]) t.dispose();
  }
}

/** The activation tensors one decoder block reads and writes (views of the workspace). */
interface BlockTensors {
  x: DeviceTensor;
  h: DeviceTensor;
  q: DeviceTensor;
  k: DeviceTensor;
  v: DeviceTensor;
  att: DeviceTensor;
  proj: DeviceTensor;
  gate: DeviceTensor;
  up: DeviceTensor;
  qkv: DeviceTensor;
  gateUp: DeviceTensor;
  positions: DeviceTensor;
  /** q/k/v and gate/up are views into qkv/gateUp (one row), so fused outputs need no split copies. */
  fusedViews: boolean;
  /** One row: q and k side by side as one tensor (1, (heads + kvHeads) * headDim), for one RoPE launch. */
  qk?: DeviceTensor;
}

/** Block l's attention, from t.q/t.k/t.v into t.att. */
interface AttentionStep {
  run(l: number): void;
  /**
   * run() rotates q and k itself (RoPE fused into the batched decode kernel: one launch instead of
   * three per block), so the block launches no RoPE of its own and q/k reach run() unrotated.
   */
  rotatesQk: boolean;
}

/** Views of the workspace for one batch size: whole buffers, plus per-sequence rows for attention. */
interface BatchViews extends BlockTensors {
  logits: DeviceTensor;
  ids: DeviceTensor;
  qRows: DeviceTensor[];
  kRows: DeviceTensor[];
  vRows: DeviceTensor[];
  attRows: DeviceTensor[];
}

/** Row-capacity activation buffers of one forward pass; views of `rows` rows are handed out per call. */
class Workspace {
  readonly tensors: Record<
    "x" | "h" | "q" | "k" | "v" | "att" | "proj" | "gate" | "up" | "qkv" | "gateUp" | "logits",
    DeviceTensor
  >;
  readonly ids: DeviceTensor;
  readonly positions: DeviceTensor;

  constructor(
    readonly capacity: number,
    widths: { dim: number; kv: number; hidden: number; vocab: number },
  ) {
    const made: DeviceTensor[] = [];
    const f16 = (width: number): DeviceTensor => {
      const t = DeviceTensor.empty("f16", [capacity, width]);
      made.push(t);
      return t;
    };
    try {
      this.tensors = {
        x: f16(widths.dim),
        h: f16(widths.dim),
        q: f16(widths.dim),
        k: f16(widths.kv),
        v: f16(widths.kv),
        att: f16(widths.dim),
        proj: f16(widths.dim),
        gate: f16(widths.hidden),
        up: f16(widths.hidden),
        // Outputs of the fused projections ([q | k | v] and [gate | up] per row).
        qkv: f16(widths.dim + 2 * widths.kv),
        gateUp: f16(2 * widths.hidden),
        logits: f16(widths.vocab),
      };
      this.ids = DeviceTensor.empty("i32", [capacity]);
      made.push(this.ids);
      this.positions = DeviceTensor.empty("i32", [capacity]);
      made.push(this.positions);
    } catch (error) {
      for (const t of made) t.dispose();
      throw error;
    }
  }

  /** The first `rows` rows of a buffer. */
  rows(name: keyof Workspace["tensors"], rows: number): DeviceTensor {
    const t = this.tensors[name];
    return t.view([rows, t.shape[1]]);
  }

  get byteLength(): number {
    return (
      Object.values(this.tensors).reduce((s, t) => s + t.byteLength, 0) +
      this.ids.byteLength +
      this.positions.byteLength
    );
  }

  dispose(): void {
    for (const t of Object.values(this.tensors)) t.dispose();
    this.ids.dispose();
    this.positions.dispose();
  }
}

/**
 * Parts of a decoder block that a timing run may leave out of every block (CudaLlamaRuntime.omitParts):
 * `trirun-eval speed --breakdown` times the step without each in turn, so that the difference is
 * that part's cost. Outputs are meaningless while any is left out.
 */
export const STEP_PARTS = [
  "qkv", // the q/k/v projections (one fused matmul, or three) and the copies that split them
  "attention", // RoPE, the cache append and attention
  "o", // the o projection
  "norms", // the residual adds with the next norms (add + RMSNorm), twice per block
  "gate-up", // the gate and up projections
  // SiLU(gate) * up, or BitNet's relu2(gate) * up (with fuseRowOps: the one launch of the gate, the MLP's
  // sub-norm and its quantization)
  "mlp-activation",
  "down", // the down projection
  // BitNet b1.58: the norms before o and down (with fuseRowOps: before o only, the other being inside the
  // fused gate launch; the quantization after it stays, as a launch of its own)
  "sub-norms",
  // 8-bit activations: every linear input's quantization (with fuseRowOps: the norms' quantizing part,
  // which has no launch of its own)
  "quantize",
] as const;
export type StepPart = (typeof STEP_PARTS)[number];

/** The parts of STEP_PARTS that a block of `config` has. */
export function stepPartsOf(config: LlamaModel["config"]): StepPart[] {
  return STEP_PARTS.filter(
    (p) =>
      (p !== "sub-norms" || config.subNorms === true) &&
      (p !== "quantize" || config.activationBits !== undefined),
  );
}

/** Options of the CUDA runtime. */
export interface CudaRuntimeOptions {
  /**
   * Run q/k/v and gate/up as one matmul each (layers fused with `TriRunLinear.concat` /
   * `Float16Linear.concat`): fewer, wider launches. "copy" keeps the model's own layers (their device
   * memory twice), "move" disposes them once fused (the runtime then owns the only copy; use the
   * model through this runtime only). Blocks whose layers cannot be fused (padding, bias, mixed kinds)
   * stay unfused. Default: no fusion.
   */
  fuse?: "copy" | "move";
  /**
   * BitNet b1.58's row ops in fewer launches: each norm quantizes its output for the next linear layer
   * itself (8-bit activations), and the squared-ReLU gate, the MLP's sub-norm and that quantization run
   * as one op (`ops.relu2MulRmsNorm`). The results are the unfused ops' bit for bit (the kernels' GPU
   * test checks that); five launches fewer per block with 8-bit activations, one with fp ones. No effect
   * on a Llama block. Default: true (the BitNet 2B4T step 1.8-5.5% faster on the H100: BENCHMARKS.md); false
   * launches each op on its own, for comparison.
   */
  fuseRowOps?: boolean;
  /**
   * Replay each batched decoding step (decodeBatch with a batch cache) as one CUDA graph: the step's
   * few hundred launches are captured once per cache (after one eager warm-up step) and replayed with a
   * single call. Default: true.
   */
  graphs?: boolean;
}

/** The projections of one block as the runtime runs them: fused where possible. */
interface BlockProjections {
  qkv?: Linear;
  gateUp?: Linear;
}

/** A graph failure that an eager step cures (see #replayStep). */
function recapturable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  return (
    /capture it again/.test(error.message) || (error as Error & { code?: string }).code === "ERR_GRAPH_WARMUP"
  );
}

/** A captured decoding step for one batch cache. */
interface StepGraph {
  /** The workspace generation it was captured against (a new workspace makes it stale). */
  generation: number;
  /** undefined after the eager warm-up step, before the capture. */
  graph: CudaGraph | undefined;
}

/** Fuses `parts` if they are all TriRun or all Float16 CUDA layers that concat accepts; else undefined. */
function tryConcat(parts: Linear[], move: boolean): Linear | undefined {
  try {
    if (parts.every((p) => p instanceof TriRunLinear)) {
      return TriRunLinear.concat(parts as TriRunLinear[], { dispose: move });
    }
    if (parts.every((p) => p instanceof Float16Linear)) {
      return Float16Linear.concat(parts as Float16Linear[], { dispose: move });
    }
  } catch (error) {
    // Not fusable (padded, bias, different widths): run the parts one by one.
    if (error instanceof TypeError || error instanceof RangeError) return undefined;
    throw error;
  }
  return undefined;
}

/**
 * The whole forward pass on the GPU: fp16 activations, fp32 math inside the kernels of
 * @trirun/kernel-native (embedding, RMSNorm, RoPE, attention, SiLU-gate, residual adds) and the model's
 * own @trirun/layers CUDA linears fed device tensors, so nothing returns to the host between layers.
 * Norm weights stay fp32 on the device; the embedding is stored in fp16.
 */
export class CudaLlamaRuntime implements LlamaRuntime {
  readonly backend = "cuda" as const;
  readonly #embedding!: DeviceTensor;
  readonly #attnNorms: DeviceTensor[] = [];
  readonly #ffnNorms: DeviceTensor[] = [];
  /** BitNet b1.58: the norms before o_proj and down_proj (empty for the Llama block). */
  readonly #attnSubNorms: DeviceTensor[] = [];
  readonly #ffnSubNorms: DeviceTensor[] = [];
  readonly #finalNorm!: DeviceTensor;
  readonly #projections: BlockProjections[] = [];
  readonly #useGraphs: boolean;
  readonly #fuseRowOps: boolean;
  #omit: ReadonlySet<StepPart> = new Set();
  #workspace: Workspace | undefined;
  /** Bumped whenever the workspace is replaced or the omitted parts change: graphs captured before are stale. */
  #generation = 0;
  /** Views of the workspace for decodeBatch, per batch size (made once: the decode loop is hot). */
  readonly #batchViews = new Map<number, BatchViews>();
  readonly #graphs = new WeakMap<CudaBatchKvCache, StepGraph>();
  readonly #liveGraphs = new Set<CudaGraph>();
  /**
   * A graph holds every buffer its launches use, the cache's keys and values included: a batch cache
   * dropped without dispose() would keep its memory (and its graph) for the runtime's lifetime.
   */
  readonly #orphanedGraphs = new FinalizationRegistry<CudaGraph>((graph) => this.#releaseGraph(graph));
  /** The dispose hook this runtime put on each batch cache (one per cache). */
  readonly #cacheHooks = new WeakMap<CudaBatchKvCache, () => void>();
  #disposed = false;

  constructor(
    readonly model: LlamaModel,
    opts: CudaRuntimeOptions = {},
  ) {
    checkCudaLayers(model);
    if (!available()) {
      throw new CudaRuntimeUnavailableError(
        `the CUDA runtime needs a usable CUDA device: ${unavailableReason() ?? "unknown reason"}`,
      );
    }
    if (opts.fuse !== undefined && opts.fuse !== "copy" && opts.fuse !== "move") {
      throw new TypeError(
        `opts.fuse: expected "copy", "move" or undefined, got ${JSON.stringify(opts.fuse)}`,
      );
    }
    if (opts.fuseRowOps !== undefined && typeof opts.fuseRowOps !== "boolean") {
      throw new TypeError(`opts.fuseRowOps: expected a boolean, got ${JSON.stringify(opts.fuseRowOps)}`);
    }
    this.#useGraphs = opts.graphs ?? true;
    this.#fuseRowOps = opts.fuseRowOps ?? true;
    const c = model.config;
    if (headSize(c) > OPS_MAX_HEAD_DIM) {
      throw new RangeError(
        `model: head size ${headSize(c)} exceeds the attention kernels' limit of ${OPS_MAX_HEAD_DIM}`,
      );
    }
    // A failure part-way (a device allocation) frees what was made here; the fused projections of
    // `fuse: "move"` cannot give the model back the layers they took, which the error says.
    try {
      this.#embedding = DeviceTensor.fromArray(encodeF16(model.embedding), [c.vocabSize, c.dim], "f16");
      this.#finalNorm = DeviceTensor.fromArray(model.finalNorm, [c.dim], "f32");
      this.#upload(model, opts);
    } catch (error) {
      this.#freeOwned();
      const moved = this.#projections.filter((p) => p.qkv !== undefined || p.gateUp !== undefined).length;
      if (opts.fuse === "move" && moved > 0 && error instanceof Error) {
        error.message += ` (fuse: "move" had already taken the fused layers of ${moved} block(s) from the model, which are disposed now)`;
      }
      throw error;
    }
  }

  /** Uploads the norms and fuses the projections (see opts.fuse). */
  #upload(model: LlamaModel, opts: CudaRuntimeOptions): void {
    const c = model.config;
    for (const block of model.blocks) {
      this.#attnNorms.push(DeviceTensor.fromArray(block.attnNorm, [c.dim], "f32"));
      this.#ffnNorms.push(DeviceTensor.fromArray(block.ffnNorm, [c.dim], "f32"));
      if (c.subNorms && block.attnSubNorm && block.ffnSubNorm) {
        this.#attnSubNorms.push(DeviceTensor.fromArray(block.attnSubNorm, [c.dim], "f32"));
        this.#ffnSubNorms.push(DeviceTensor.fromArray(block.ffnSubNorm, [c.hiddenDim], "f32"));
      }
      const lin = block.linears;
      const move = opts.fuse === "move";
      // Pushed before fusing, each fused layer recorded as soon as it exists: a failure on the next
      // one leaves nothing unaccounted for (#freeOwned disposes it).
      const projections: BlockProjections = {};
      this.#projections.push(projections);
      if (opts.fuse === undefined) continue;
      projections.qkv = tryConcat(
        [lin["self_attn.q_proj"], lin["self_attn.k_proj"], lin["self_attn.v_proj"]],
        move,
      );
      projections.gateUp = tryConcat([lin["mlp.gate_proj"], lin["mlp.up_proj"]], move);
    }
  }

  /** Frees the runtime's own device tensors and fused layers (not the model's). */
  #freeOwned(): void {
    this.#embedding?.dispose();
    this.#finalNorm?.dispose();
    for (const t of [...this.#attnNorms, ...this.#ffnNorms, ...this.#attnSubNorms, ...this.#ffnSubNorms])
      t.dispose();
    for (const p of this.#projections) {
      p.qkv?.dispose();
      p.gateUp?.dispose();
    }
  }

  /** Blocks whose q/k/v and gate/up projections run fused (see `opts.fuse`). */
  get fusedBlocks(): number {
    return this.#projections.filter((p) => p.qkv !== undefined && p.gateUp !== undefined).length;
  }

  /** Device bytes of the fused layers the runtime owns. */
  get fusedByteLength(): number {
    return this.#projections.reduce((s, p) => s + (p.qkv?.byteLength ?? 0) + (p.gateUp?.byteLength ?? 0), 0);
  }

  /** A KV cache on the device for up to `capacity` positions (default: the model's maxSeqLen). */
  newCache(capacity = this.model.config.maxSeqLen): CudaKvCache {
    const c = this.model.config;
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > c.maxSeqLen) {
      throw new RangeError(`capacity: expected an integer in 1..${c.maxSeqLen}, got ${capacity}`);
    }
    return new CudaKvCache(c.nLayers, capacity, kvDim(c));
  }

  /** The parts left out of every block (timing only; see STEP_PARTS). */
  get omitParts(): readonly StepPart[] {
    return [...this.#omit];
  }

  /**
   * Leaves `parts` out of every decoder block from the next step on (timing runs only: outputs are
   * meaningless while any part is left out; `[]` restores the full block). Captured step graphs are
   * dropped: each batch cache warms up and captures again. Parts this model's block does not have
   * (sub-norms of a Llama block, quantize without 8-bit activations) are a RangeError.
   */
  setOmitParts(parts: readonly StepPart[]): void {
    if (!Array.isArray(parts)) throw new TypeError("parts: expected an array of step part names");
    const have = stepPartsOf(this.model.config);
    for (const p of parts) {
      if (!(STEP_PARTS as readonly unknown[]).includes(p)) {
        throw new TypeError(
          `parts: unknown step part ${JSON.stringify(p)} (expected one of ${STEP_PARTS.join(", ")})`,
        );
      }
      if (!have.includes(p)) throw new RangeError(`parts: this model's block has no "${p}" part`);
    }
    this.#omit = new Set(parts);
    this.#generation++;
  }

  /** A cache for `batch` sequences decoded together by decodeBatch, up to `capacity` positions each. */
  newBatchCache(batch: number, capacity = this.model.config.maxSeqLen): CudaBatchKvCache {
    const c = this.model.config;
    if (!Number.isInteger(batch) || batch < 1) {
      throw new RangeError(`batch: expected a positive integer, got ${batch}`);
    }
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > c.maxSeqLen) {
      throw new RangeError(`capacity: expected an integer in 1..${c.maxSeqLen}, got ${capacity}`);
    }
    return new CudaBatchKvCache(c.nLayers, batch, capacity, kvDim(c));
  }

  /** Device bytes of the runtime's own tensors (embedding, norms, activation buffers; not the linears). */
  get byteLength(): number {
    return (
      this.#embedding.byteLength +
      this.#finalNorm.byteLength +
      [...this.#attnNorms, ...this.#ffnNorms, ...this.#attnSubNorms, ...this.#ffnSubNorms].reduce(
        (s, t) => s + t.byteLength,
        0,
      ) +
      (this.#workspace?.byteLength ?? 0)
    );
  }

  #workspaceFor(rows: number): Workspace {
    if (this.#workspace !== undefined && this.#workspace.capacity >= rows) return this.#workspace;
    if (this.#workspace !== undefined) {
      // Queued kernels (and graphs) may still read the old buffers.
      synchronize();
      this.#disposeGraphs();
      this.#workspace.dispose();
      this.#workspace = undefined;
      this.#batchViews.clear();
    }
    const c = this.model.config;
    const capacity = Math.max(ROW_STEP, Math.ceil(rows / ROW_STEP) * ROW_STEP);
    this.#workspace = new Workspace(capacity, {
      dim: c.dim,
      kv: kvDim(c),
      hidden: c.hiddenDim,
      vocab: c.vocabSize,
    });
    this.#generation++;
    return this.#workspace;
  }

  #disposeGraphs(): void {
    for (const g of [...this.#liveGraphs]) this.#releaseGraph(g);
  }

  #releaseGraph(graph: CudaGraph): void {
    this.#liveGraphs.delete(graph);
    this.#orphanedGraphs.unregister(graph);
    if (!graph.disposed) graph.dispose();
  }

  /** Forgets a cache's step graph: the next step of that cache warms up and captures again. */
  #dropGraph(cache: CudaBatchKvCache): void {
    const entry = this.#graphs.get(cache);
    this.#graphs.delete(cache);
    if (entry?.graph !== undefined) this.#releaseGraph(entry.graph);
  }

  /** Step graphs kept for batch caches (diagnostics: one per live cache at most). */
  get graphCount(): number {
    return this.#liveGraphs.size;
  }

  /**
   * One decoder block on `rows` rows of the views in `t`; `attention` runs attention from t.q/t.k/t.v
   * (after RoPE, which the block applies first unless attention.rotatesQk) into t.att. Fused projections
   * write [q | k | v] and [gate | up] rows into t.qkv and t.gateUp; for one row those are the q/k/v
   * (gate/up) tensors themselves, else they are split with one strided copy each.
   */
  #block(
    l: number,
    rows: number,
    t: BlockTensors,
    attention: AttentionStep,
    normNext: DeviceTensor | undefined,
  ): void {
    const c = this.model.config;
    const lin = this.model.blocks[l].linears;
    const fused = this.#projections[l];
    const eps = c.normEps;
    const rope = { headDim: headSize(c), theta: c.ropeTheta, style: c.ropeStyle };
    // t.h holds rmsnorm(x) with this block's attention norm (from the caller or the previous block).
    // With activation quantization (BitNet's A8) every linear input is quantized in place first: with
    // fuseRowOps by the op that wrote it (#decoderBlocks' first norm, or the previous block's last op).
    // Parts left out for a timing run (setOmitParts): `keep(part)` is false for those.
    const omit = this.#omit;
    const keep = (part: StepPart) => !omit.has(part);
    const bits = keep("quantize") ? c.activationBits : undefined;
    const fuseRows = this.#fuseRowOps;
    if (bits !== undefined && !fuseRows) ops.quantizeRows(t.h, t.h, { bits });
    if (keep("qkv")) {
      if (fused.qkv) {
        fused.qkv.forward(t.h, { out: t.qkv });
        if (!t.fusedViews) {
          const [dim, kv] = [c.dim, kvDim(c)];
          const width = dim + 2 * kv;
          t.q.copyRowsFrom(t.qkv, rows, dim, { srcStride: width });
          t.k.copyRowsFrom(t.qkv.view([rows * width - dim], dim), rows, kv, { srcStride: width });
          t.v.copyRowsFrom(t.qkv.view([rows * width - dim - kv], dim + kv), rows, kv, { srcStride: width });
        }
      } else {
        lin["self_attn.q_proj"].forward(t.h, { out: t.q });
        lin["self_attn.k_proj"].forward(t.h, { out: t.k });
        lin["self_attn.v_proj"].forward(t.h, { out: t.v });
      }
    }
    if (keep("attention")) {
      if (!attention.rotatesQk) {
        if (t.qk !== undefined) {
          // One row: q and k are adjacent in the [q | k | v] buffer, so one launch rotates both.
          ops.rope(t.qk, t.positions, rope);
        } else {
          ops.rope(t.q, t.positions, rope);
          ops.rope(t.k, t.positions, rope);
        }
      }
      attention.run(l);
    }
    this.#normThenQuantize(t.att, c.subNorms && keep("sub-norms") ? this.#attnSubNorms[l] : undefined, bits);
    if (keep("o")) lin["self_attn.o_proj"].forward(t.att, { out: t.proj });
    if (!keep("norms")) {
      // (left out, with the quantization it carries under fuseRowOps; a separate one stays)
      if (bits !== undefined && !fuseRows) ops.quantizeRows(t.h, t.h, { bits });
    } else if (fuseRows && bits !== undefined) {
      ops.addRmsNorm(t.x, t.proj, this.#ffnNorms[l], t.h, { eps, quantizeBits: bits });
    } else {
      ops.addRmsNorm(t.x, t.proj, this.#ffnNorms[l], t.h, { eps });
      if (bits !== undefined) ops.quantizeRows(t.h, t.h, { bits });
    }
    if (keep("gate-up")) {
      if (fused.gateUp) {
        fused.gateUp.forward(t.h, { out: t.gateUp });
        if (!t.fusedViews) {
          const hidden = c.hiddenDim;
          t.gate.copyRowsFrom(t.gateUp, rows, hidden, { srcStride: 2 * hidden });
          t.up.copyRowsFrom(t.gateUp.view([rows * 2 * hidden - hidden], hidden), rows, hidden, {
            srcStride: 2 * hidden,
          });
        }
      } else {
        lin["mlp.gate_proj"].forward(t.h, { out: t.gate });
        lin["mlp.up_proj"].forward(t.h, { out: t.up });
      }
    }
    const ffnSubNorm = c.subNorms ? this.#ffnSubNorms[l] : undefined;
    if (fuseRows && c.mlpActivation === "relu2" && ffnSubNorm !== undefined) {
      // One launch: the gate, the sub-norm (kept when "sub-norms" is left out: it cannot be split off) and
      // the quantization ("mlp-activation" leaves out the launch).
      if (keep("mlp-activation")) {
        ops.relu2MulRmsNorm(
          t.gate,
          t.up,
          ffnSubNorm,
          t.gate,
          bits === undefined ? { eps } : { eps, quantizeBits: bits },
        );
      }
    } else {
      if (keep("mlp-activation")) {
        if (c.mlpActivation === "relu2") ops.relu2Mul(t.gate, t.up, t.gate);
        else ops.siluMul(t.gate, t.up, t.gate);
      }
      this.#normThenQuantize(t.gate, keep("sub-norms") ? ffnSubNorm : undefined, bits);
    }
    if (keep("down")) lin["mlp.down_proj"].forward(t.gate, { out: t.proj });
    // The residual add, fused with the next norm (the next block's or the final one) where there is one;
    // with fuseRowOps the next block's norm also quantizes (the final one never does).
    const quantizeNext = fuseRows && bits !== undefined && l + 1 < c.nLayers ? { quantizeBits: bits } : {};
    if (keep("norms")) {
      if (normNext !== undefined) ops.addRmsNorm(t.x, t.proj, normNext, t.h, { eps, ...quantizeNext });
      else ops.add(t.x, t.proj, t.x);
    }
  }

  /** x = rmsnorm(x) with `weight` if given, then quantized to `bits` if given: one launch with fuseRowOps. */
  #normThenQuantize(x: DeviceTensor, weight: DeviceTensor | undefined, bits: number | undefined): void {
    const eps = this.model.config.normEps;
    if (weight !== undefined && bits !== undefined && this.#fuseRowOps) {
      ops.rmsnorm(x, weight, x, { eps, quantizeBits: bits });
      return;
    }
    if (weight !== undefined) ops.rmsnorm(x, weight, x, { eps });
    if (bits !== undefined) ops.quantizeRows(x, x, { bits });
  }

  /**
   * Embedding, the first norm and every block for `rows` tokens; `attention.run(l)` runs block l's
   * attention. With `finalNorm` the last block's residual add also applies the final norm into t.h.
   */
  #decoderBlocks(
    ids: DeviceTensor,
    rows: number,
    t: BlockTensors,
    finalNorm: boolean,
    attention: AttentionStep,
  ): void {
    const c = this.model.config;
    ops.embedding(this.#embedding, ids, t.x);
    // The first block's norm (which quantizes for it with fuseRowOps, as every block's last op does for the next).
    const bits = c.activationBits;
    const quantize =
      this.#fuseRowOps && bits !== undefined && !this.#omit.has("quantize") ? { quantizeBits: bits } : {};
    ops.rmsnorm(t.x, this.#attnNorms[0], t.h, { eps: c.normEps, ...quantize });
    for (let l = 0; l < c.nLayers; l++) {
      const normNext = l + 1 < c.nLayers ? this.#attnNorms[l + 1] : finalNorm ? this.#finalNorm : undefined;
      this.#block(l, rows, t, attention, normNext);
    }
  }

  /** The block tensors of `rows` rows of the workspace (views). */
  #blockTensors(ws: Workspace, rows: number, positions: DeviceTensor): BlockTensors {
    const c = this.model.config;
    const [dim, kv, hidden] = [c.dim, kvDim(c), c.hiddenDim];
    const r = (name: keyof Workspace["tensors"]) => ws.rows(name, rows);
    const qkv = r("qkv");
    const gateUp = r("gateUp");
    if (rows === 1) {
      // One row: [q | k | v] and [gate | up] are contiguous, so views replace the copies.
      return {
        x: r("x"),
        h: r("h"),
        att: r("att"),
        proj: r("proj"),
        qkv,
        gateUp,
        positions,
        fusedViews: true,
        q: qkv.view([1, dim]),
        qk: qkv.view([1, dim + kv]),
        k: qkv.view([1, kv], dim),
        v: qkv.view([1, kv], dim + kv),
        gate: gateUp.view([1, hidden]),
        up: gateUp.view([1, hidden], hidden),
      };
    }
    return {
      x: r("x"),
      h: r("h"),
      att: r("att"),
      proj: r("proj"),
      qkv,
      gateUp,
      positions,
      fusedViews: false,
      q: r("q"),
      k: r("k"),
      v: r("v"),
      gate: r("gate"),
      up: r("up"),
    };
  }

  /**
   * Runs the decoder over `tokens` at positions cache.length.. (0 without a cache) and leaves the
   * final-normed hidden states in the workspace's `h` buffer (only the last row's, first, with lastOnly).
   */
  #decoder(tokens: ArrayLike<number>, cache: CudaKvCache | undefined, lastOnly: boolean): Workspace {
    if (this.#disposed) throw new Error("CudaLlamaRuntime: used after dispose()");
    const c = this.model.config;
    const rows = tokens.length;
    if (rows === 0) throw new RangeError("tokens: expected at least one token");
    const pos0 = cache ? cache.length : 0;
    const limit = cache ? cache.capacity : c.maxSeqLen;
    if (pos0 + rows > limit) {
      throw new RangeError(
        `tokens: positions up to ${pos0 + rows} exceed the ${cache ? "cache capacity" : "model's maxSeqLen"} ${limit}`,
      );
    }
    const ids = tokenIds(tokens, c.vocabSize);
    const ws = this.#workspaceFor(rows);
    const idsView = ws.ids.view([rows]);
    const positions = ws.positions.view([rows]);
    idsView.upload(ids);
    positions.upload(Int32Array.from({ length: rows }, (_, i) => pos0 + i));
    const t = this.#blockTensors(ws, rows, positions);
    const heads = { heads: c.nHeads, kvHeads: c.nKvHeads, headDim: headSize(c) };

    const eps = c.normEps;
    // With lastOnly the final norm runs on the last row only, after the blocks.
    this.#decoderBlocks(idsView, rows, t, !lastOnly, {
      rotatesQk: false,
      run: (l) => {
        if (cache) {
          ops.attentionDecode(t.q, t.k, t.v, cache.keys[l], cache.values[l], t.att, {
            ...heads,
            position: pos0,
          });
        } else {
          ops.attentionPrefill(t.q, t.k, t.v, t.att, heads);
        }
      },
    });
    if (cache) cache.length = pos0 + rows;
    if (lastOnly) {
      ops.rmsnorm(t.x.view([1, c.dim], (rows - 1) * c.dim), this.#finalNorm, t.h.view([1, c.dim]), { eps });
    }
    return ws;
  }

  #cacheOf(cache: KvCache | undefined): CudaKvCache | undefined {
    if (cache !== undefined && !(cache instanceof CudaKvCache)) {
      throw new TypeError("cache: expected a cache made by this runtime's newCache()");
    }
    return cache;
  }

  /** Device logits (rows, vocab) f16 in the workspace for the rows left in `h`. */
  #classify(ws: Workspace, rows: number): DeviceTensor {
    const logits = ws.rows("logits", rows);
    this.model.classifier.forward(ws.rows("h", rows), { out: logits });
    return logits;
  }

  forward(tokens: ArrayLike<number>, cache?: KvCache, opts: ForwardOptions = {}): Float32Array {
    const ws = this.#decoder(tokens, this.#cacheOf(cache), opts.lastOnly === true);
    const rows = opts.lastOnly ? 1 : tokens.length;
    // One download per call: the logits, rounded to fp16 by the classifier's output.
    return decodeF16(this.#classify(ws, rows).download() as Uint16Array);
  }

  /**
   * Negative log-likelihood (nats) of tokens[1..] given the tokens before each, computed on the device
   * from the fp16 logits (fp32 log-softmax); only the per-token losses come back.
   */
  targetNll(tokens: ArrayLike<number>): Float64Array {
    if (tokens.length < 2) throw new RangeError(`tokens: expected at least 2 tokens, got ${tokens.length}`);
    const rows = tokens.length - 1;
    const ws = this.#decoder(tokens, undefined, false);
    const logits = this.#classify(ws, rows);
    const targets = DeviceTensor.fromArray(tokenIds(tokens, this.model.config.vocabSize).slice(1), [rows]);
    const out = DeviceTensor.empty("f32", [rows]);
    try {
      ops.nll(logits, targets, out);
      return Float64Array.from(out.download() as Float32Array);
    } finally {
      targets.dispose();
      out.dispose();
    }
  }

  #viewsFor(ws: Workspace, batch: number): BatchViews {
    let v = this.#batchViews.get(batch);
    if (v !== undefined) return v;
    const c = this.model.config;
    const kv = kvDim(c);
    const positions = ws.positions.view([batch]);
    const t = this.#blockTensors(ws, batch, positions);
    const rowsOf = (x: DeviceTensor, width: number) =>
      Array.from({ length: batch }, (_, b) => x.view([1, width], b * width));
    v = {
      ...t,
      logits: ws.rows("logits", batch),
      ids: ws.ids.view([batch]),
      positions,
      qRows: rowsOf(t.q, c.dim),
      kRows: rowsOf(t.k, kv),
      vRows: rowsOf(t.v, kv),
      attRows: rowsOf(t.att, c.dim),
    };
    this.#batchViews.set(batch, v);
    return v;
  }

  /** The per-sequence caches of a decodeBatch call, checked; or the batch cache. */
  #batchCaches(
    batch: number,
    caches: readonly KvCache[] | CudaBatchKvCache,
  ): CudaKvCache[] | CudaBatchKvCache {
    if (caches instanceof CudaBatchKvCache) {
      if (caches.batch !== batch) {
        throw new RangeError(`caches: a batch cache of ${caches.batch} sequences, got ${batch} tokens`);
      }
      const full = caches.lengths.findIndex((n) => n >= caches.capacity);
      if (full >= 0) throw new RangeError(`caches: sequence ${full} is full (${caches.capacity} positions)`);
      return caches;
    }
    if (!Array.isArray(caches) || caches.length !== batch) {
      throw new RangeError(`caches: expected one cache per token (${batch}), got ${caches.length}`);
    }
    return caches.map((cache: KvCache, b: number) => {
      if (!(cache instanceof CudaKvCache)) {
        throw new TypeError(`caches[${b}]: expected a cache made by this runtime's newCache()`);
      }
      if (cache.length >= cache.capacity) {
        throw new RangeError(`caches[${b}]: full (${cache.capacity} positions)`);
      }
      if (caches.indexOf(cache) !== b) throw new RangeError(`caches[${b}]: the same cache is listed twice`);
      return cache;
    });
  }

  /**
   * The device work of one decoding step after ids and positions are uploaded: embedding, every block,
   * final norm, classifier. Everything it reads about the step (ids, positions, cache lengths) is on
   * the device, so the same launches can be captured once and replayed for every later step.
   */
  #decodeStep(v: BatchViews, owned: CudaKvCache[] | CudaBatchKvCache): void {
    const c = this.model.config;
    const heads = { heads: c.nHeads, kvHeads: c.nKvHeads, headDim: headSize(c) };
    const attention: AttentionStep =
      owned instanceof CudaBatchKvCache
        ? {
            // RoPE, the cache append and attention in one launch per block (same bits as separate).
            rotatesQk: true,
            run: (l) =>
              ops.attentionDecodeBatch(v.q, v.k, v.v, owned.keys[l], owned.values[l], v.positions, v.att, {
                ...heads,
                rope: { theta: c.ropeTheta, style: c.ropeStyle },
              }),
          }
        : {
            rotatesQk: false,
            run: (l) => {
              for (let b = 0; b < owned.length; b++) {
                const cache = owned[b];
                ops.attentionDecode(
                  v.qRows[b],
                  v.kRows[b],
                  v.vRows[b],
                  cache.keys[l],
                  cache.values[l],
                  v.attRows[b],
                  {
                    ...heads,
                    position: cache.length,
                  },
                );
              }
            },
          };
    this.#decoderBlocks(v.ids, v.ids.numel, v, true, attention);
    this.model.classifier.forward(v.h, { out: v.logits });
  }

  /** Runs a batch-cache step through its graph: eager the first time, captured the second, replayed after. */
  #replayStep(v: BatchViews, cache: CudaBatchKvCache): void {
    let entry = this.#graphs.get(cache);
    if (entry !== undefined && entry.generation !== this.#generation) entry = undefined;
    if (entry === undefined) {
      // Warm-up: scratch buffers, the kernel workspace and cuBLAS state are allocated here, not during
      // the capture (where allocation is refused).
      this.#dropGraph(cache); // a stale entry (an older workspace) and its graph go
      this.#decodeStep(v, cache);
      this.#graphs.set(cache, { generation: this.#generation, graph: undefined });
      const hook = this.#cacheHooks.get(cache) ?? (() => this.#dropGraph(cache));
      this.#cacheHooks.set(cache, hook);
      cache.onDispose.add(hook);
      return;
    }
    try {
      if (entry.graph === undefined || entry.graph.disposed) {
        entry.graph = captureGraph(() => this.#decodeStep(v, cache));
        this.#liveGraphs.add(entry.graph);
        this.#orphanedGraphs.register(cache, entry.graph, entry.graph);
      }
      entry.graph.launch();
    } catch (error) {
      // Neither a refused launch nor a failed capture ran anything. Two are recoverable: the kernel
      // workspace was reallocated since the capture ("capture it again"), or it is not ready for one
      // (ERR_GRAPH_WARMUP: after a failed call it must be zeroed by an eager call first). This step
      // runs eagerly, which prepares both, and the cache's next step warms up and captures again
      // (recapturing at once would fail the same way on every later step).
      if (!recapturable(error)) throw error;
      this.#dropGraph(cache);
      this.#decodeStep(v, cache);
    }
  }

  /**
   * One decoding step for a batch of independent sequences: tokens[b] is appended to sequence b at its
   * current length, in a batch cache (newBatchCache: one attention launch per layer for the whole batch;
   * replayed as a CUDA graph from the third step on, unless `graphs: false`) or in one cache per
   * sequence (newCache: one launch per sequence and layer). Returns the logits (batch, vocab) f16 on the
   * device, a view of the workspace valid until the next call; nothing is downloaded or synchronized.
   */
  decodeBatch(tokens: ArrayLike<number>, caches: readonly KvCache[] | CudaBatchKvCache): DeviceTensor {
    if (this.#disposed) throw new Error("CudaLlamaRuntime: used after dispose()");
    const c = this.model.config;
    const batch = tokens.length;
    if (batch === 0) throw new RangeError("tokens: expected at least one token");
    const owned = this.#batchCaches(batch, caches);
    const lengths = owned instanceof CudaBatchKvCache ? owned.lengths : owned.map((cache) => cache.length);
    const ids = tokenIds(tokens, c.vocabSize);
    const v = this.#viewsFor(this.#workspaceFor(batch), batch);
    v.ids.upload(ids);
    v.positions.upload(Int32Array.from(lengths));
    if (this.#useGraphs && owned instanceof CudaBatchKvCache) this.#replayStep(v, owned);
    else this.#decodeStep(v, owned);
    if (owned instanceof CudaBatchKvCache) for (let b = 0; b < batch; b++) owned.lengths[b]++;
    else for (const cache of owned) cache.length++;
    // A view of its own: a caller that disposes it must not retire the handle the next steps write.
    return v.logits.view(v.logits.shape);
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    synchronize();
    this.#disposeGraphs();
    this.#workspace?.dispose();
    this.#embedding.dispose();
    this.#finalNorm.dispose();
    for (const t of [...this.#attnNorms, ...this.#ffnNorms, ...this.#attnSubNorms, ...this.#ffnSubNorms])
      t.dispose();
    for (const p of this.#projections) {
      p.qkv?.dispose();
      p.gateUp?.dispose();
    }
  }
}

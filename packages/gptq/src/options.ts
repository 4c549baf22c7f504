/** Integer levels a code stands for: code - 1. */
export type Levels = "int2" | "ternary";

/** The grid of the per-group scale search: scale = f * (smallest non-clipping scale), f in [minShrink, 1]. */
export interface ScaleSearchOptions {
  /** Number of candidates f, evenly spaced from 1 down to minShrink (default 100). */
  grid?: number;
  /** Smallest f tried (default 0.1). */
  minShrink?: number;
}

/** Where a `quantize` call is: the Hessian factorisation (done 0 then 1 of 1), then the column sweep (input features done). */
export interface QuantizeProgress {
  phase: "factor" | "sweep";
  done: number;
  total: number;
}

export interface QuantizeOptions {
  /** Input features per scale: a divisor of inFeatures (128 for the TriRun kernel), or -1 for one
   *  scale per output column. Default 128. */
  groupsize?: number;
  /** "int2": levels {-1, 0, 1, 2} (codes 0..3); "ternary": {-1, 0, 1} (codes 0..2). Default "int2". */
  levels?: Levels;
  /** Columns per lazy batch update (default 128). Blocks are cut at group starts where needed. */
  blockSize?: number;
  /** Dampening as a fraction of the mean Hessian diagonal (default 0.01); raised x10 on failure. */
  damp?: number;
  /** Quantize input features in order of decreasing Hessian diagonal; with groups, whole groups are
   *  ordered (by their diagonal sum) and kept contiguous, so scales stay per natural group. Default true. */
  actOrder?: boolean;
  /** Hessian-weighted grid search for every group's scale (default true); false uses the smallest
   *  scale that clips nothing (abs-max). */
  scaleSearch?: boolean | ScaleSearchOptions;
  /** Let the search also try negative scales for int2, which put the extra level (+2) on the
   *  negative side. The TriRun format allows it (w = (code - 1) * scale); default false. */
  negativeScales?: boolean;
  /** Called as the call advances (for progress bars on large layers): `factor` 0/1 when the Hessian
   *  factorisation starts, 1/1 when it ends, then `sweep` after every block of the column sweep with
   *  the input features done so far, ending at inFeatures/inFeatures. */
  onProgress?: (progress: QuantizeProgress) => void;
}

export interface ResolvedQuantizeOptions {
  groupsize: number;
  levels: Levels;
  qmin: number;
  qmax: number;
  blockSize: number;
  damp: number;
  actOrder: boolean;
  grid: number;
  minShrink: number;
  negativeScales: boolean;
  onProgress: ((progress: QuantizeProgress) => void) | undefined;
}

/** A value as an error message shows it: strings quoted, so that "64" is not mistaken for 64. */
export function shown(v: unknown): string {
  return typeof v === "string" ? JSON.stringify(v) : String(v);
}

function isPositiveInteger(v: unknown): v is number {
  return typeof v === "number" && Number.isInteger(v) && v > 0;
}

/** Checks the options against the layer and fills defaults; throws TypeError / RangeError. */
export function resolveQuantizeOptions(opts: QuantizeOptions, inFeatures: number): ResolvedQuantizeOptions {
  if (opts === null || typeof opts !== "object") throw new TypeError("quantize options must be an object");
  const rawGroup = opts.groupsize ?? 128;
  if (rawGroup !== -1 && !isPositiveInteger(rawGroup)) {
    throw new RangeError(`groupsize must be -1 or a positive integer, got ${shown(rawGroup)}`);
  }
  const groupsize = rawGroup === -1 ? inFeatures : rawGroup;
  if (inFeatures % groupsize !== 0) {
    throw new RangeError(
      `groupsize ${groupsize} does not divide inFeatures ${inFeatures}: use a divisor or -1 (one scale per output column)`,
    );
  }
  const levels = opts.levels ?? "int2";
  if (levels !== "int2" && levels !== "ternary") {
    throw new RangeError(`levels must be "int2" or "ternary", got ${shown(levels)}`);
  }
  const blockSize = opts.blockSize ?? 128;
  if (!isPositiveInteger(blockSize) || blockSize > 1024) {
    throw new RangeError(`blockSize must be an integer in 1..1024, got ${shown(blockSize)}`);
  }
  const damp = opts.damp ?? 0.01;
  if (typeof damp !== "number" || !Number.isFinite(damp) || damp < 0) {
    throw new RangeError(`damp must be a finite number >= 0, got ${shown(damp)}`);
  }
  const actOrder = opts.actOrder ?? true;
  if (typeof actOrder !== "boolean")
    throw new TypeError(`actOrder must be a boolean, got ${typeof actOrder}`);
  const search = opts.scaleSearch ?? true;
  let grid = 1;
  let minShrink = 1;
  if (search !== false) {
    if (search !== true && (search === null || typeof search !== "object")) {
      throw new TypeError("scaleSearch must be a boolean or { grid, minShrink }");
    }
    const s = search === true ? {} : search;
    grid = s.grid ?? 100;
    minShrink = s.minShrink ?? 0.1;
    if (!isPositiveInteger(grid) || grid > 10000) {
      throw new RangeError(`scaleSearch.grid must be an integer in 1..10000, got ${String(grid)}`);
    }
    if (typeof minShrink !== "number" || !(minShrink > 0 && minShrink <= 1)) {
      throw new RangeError(`scaleSearch.minShrink must be in (0, 1], got ${String(minShrink)}`);
    }
  }
  const negativeScales = opts.negativeScales ?? false;
  if (typeof negativeScales !== "boolean") {
    throw new TypeError(`negativeScales must be a boolean, got ${typeof negativeScales}`);
  }
  const onProgress = opts.onProgress;
  if (onProgress !== undefined && typeof onProgress !== "function") {
    throw new TypeError(`onProgress must be a function, got ${typeof onProgress}`);
  }
  return {
    groupsize,
    levels,
    qmin: -1,
    qmax: levels === "int2" ? 2 : 1,
    blockSize,
    damp,
    actOrder,
    grid,
    minShrink,
    negativeScales,
    onProgress,
  };
}

// Correctness sweep of trirunMatmul: fresh random codes (full {-1,0,1,2}
// grid), scales and activations per case; the output is poisoned before each
// run; the result is compared with an independent fp32 reference (cuBLAS on
// the dequantized fp16 weights), which is itself checked against fp64 CPU math
// on small problems.
import { CudaError } from "../errors.js";
import { gemmF16, type TrirunConfig, type TrirunMatmulOptions, trirunMatmul } from "../matmul.js";
import { synchronize } from "../device.js";
import { DeviceTensor } from "../tensor.js";
import { TRIRUN_TILES } from "../validate.js";
import { GuardedOutput } from "./guarded.js";
import { packScales, packWeights } from "./layout.js";
import {
  compare,
  dequantizeF16,
  matmulF64,
  randomActivations,
  randomCodes,
  randomScales,
  type Rng,
} from "./numeric.js";

export const REL_TOLERANCE = 1e-3;
/** cuBLAS with fp32 accumulation against fp64: only rounding of the sums. */
export const REFERENCE_TOLERANCE = 1e-5;
/** Largest m * k * n for which the fp64 CPU reference is computed. */
const F64_LIMIT = 40e6;

export interface ConfigSpec {
  label: string;
  opts: TrirunMatmulOptions;
  /** Restricts the spec to some m (default: every m). */
  forM?: (m: number) => boolean;
  /** Restricts the spec to some shapes (default: every shape). */
  forShape?: (k: number, n: number) => boolean;
}

export interface SweepCase {
  k: number;
  n: number;
  /** 128, or -1 for one group (g = k). */
  groupsize: number;
  ms: readonly number[];
  configs: readonly ConfigSpec[];
}

export interface CorrectnessRow {
  k: number;
  n: number;
  groupsize: number;
  m: number;
  label: string;
  requested: TrirunMatmulOptions;
  used?: TrirunConfig;
  reference: "cublas-f32" | "cpu-f64";
  relError?: number;
  maxAbsError?: number;
  unwritten?: number;
  guardsIntact?: boolean;
  /** cuBLAS reference against fp64 (small problems). */
  referenceRelError?: number;
  pass: boolean;
  error?: string;
}

/** CUDA errors after which the context is unusable: stop instead of reporting every later call. */
const STICKY = new Set([
  "cudaErrorIllegalAddress",
  "cudaErrorLaunchFailure",
  "cudaErrorIllegalInstruction",
  "cudaErrorMisalignedAddress",
  "cudaErrorInvalidAddressSpace",
  "cudaErrorInvalidPc",
  "cudaErrorHardwareStackError",
  "cudaErrorAssert",
  "cudaErrorLaunchTimeout",
]);

export function isStickyCudaError(error: unknown): boolean {
  return error instanceof CudaError && STICKY.has(error.code);
}

function message(error: unknown): string {
  if (error instanceof Error)
    return `${error.name}${"code" in error ? ` ${String(error.code)}` : ""}: ${error.message}`;
  return String(error);
}

export interface SweepOptions {
  /** Use cuBLAS for the fp32 reference (false: fp64 CPU only, e.g. under compute-sanitizer). */
  useCublas: boolean;
  log: (line: string) => void;
}

/** Runs the sweep; stops early (with a failing row) after a sticky CUDA error. */
export function runSweep(cases: readonly SweepCase[], rng: Rng, options: SweepOptions): CorrectnessRow[] {
  const rows: CorrectnessRow[] = [];
  for (const c of cases) {
    const started = performance.now();
    const before = rows.length;
    const aborted = runCase(c, rng, options, rows);
    const caseRows = rows.slice(before);
    const failed = caseRows.filter((r) => !r.pass).length;
    const worst = Math.max(0, ...caseRows.map((r) => r.relError ?? 0));
    options.log(
      `correctness k=${c.k} n=${c.n} g=${c.groupsize}: ${caseRows.length} runs, ${failed} failed, worst rel error ${worst.toExponential(2)} (${((performance.now() - started) / 1000).toFixed(1)} s)`,
    );
    if (aborted) break;
  }
  return rows;
}

function runCase(c: SweepCase, rng: Rng, options: SweepOptions, rows: CorrectnessRow[]): boolean {
  const { k, n } = c;
  const g = c.groupsize === -1 ? k : c.groupsize;
  const groups = k / g;
  const codes = randomCodes(rng, k * n);
  const scales = randomScales(rng, groups * n);
  const w = dequantizeF16(codes, scales, k, n, g);
  const owned: DeviceTensor[] = [];
  const keep = <T extends DeviceTensor>(t: T): T => {
    owned.push(t);
    return t;
  };
  try {
    const B = keep(DeviceTensor.fromArray(packWeights(codes, k, n), [k / 16, n], "i32"));
    const S = keep(DeviceTensor.fromArray(packScales(scales, groups, n), [groups, n], "f16"));
    const W = options.useCublas ? keep(DeviceTensor.fromArray(w, [k, n], "f16")) : undefined;
    for (const m of c.ms) {
      const a = randomActivations(rng, m * k);
      const A = DeviceTensor.fromArray(a, [m, k], "f16");
      let ref: Float32Array | Float64Array;
      let referenceRelError: number | undefined;
      const small = m * k * n <= F64_LIMIT;
      const ref64 = small ? matmulF64(a, w, m, k, n) : undefined;
      if (W) {
        const Cref = DeviceTensor.empty("f32", [m, n]);
        gemmF16(A, W, Cref);
        ref = Cref.download() as Float32Array;
        Cref.dispose();
        if (ref64) referenceRelError = compare(ref as Float32Array, ref64).relError;
      } else {
        ref = ref64 ?? matmulF64(a, w, m, k, n);
      }
      const out = new GuardedOutput(m, n);
      try {
        for (const spec of c.configs) {
          if (spec.forM && !spec.forM(m)) continue;
          if (spec.forShape && !spec.forShape(k, n)) continue;
          const row: CorrectnessRow = {
            k,
            n,
            groupsize: c.groupsize,
            m,
            label: spec.label,
            requested: { ...spec.opts },
            reference: W ? "cublas-f32" : "cpu-f64",
            referenceRelError,
            pass: false,
          };
          rows.push(row);
          try {
            out.poison();
            row.used = trirunMatmul(A, B, S, out.tensor, { ...spec.opts, groupsize: c.groupsize });
            const { c: result, guardsIntact } = out.read();
            const cmp = compare(result, ref);
            row.relError = cmp.relError;
            row.maxAbsError = cmp.maxAbsError;
            row.unwritten = cmp.nonFinite;
            row.guardsIntact = guardsIntact;
            row.pass =
              cmp.nonFinite === 0 &&
              guardsIntact &&
              cmp.relError <= REL_TOLERANCE &&
              (referenceRelError === undefined || referenceRelError <= REFERENCE_TOLERANCE);
            if (!row.pass) {
              options.log(
                `  FAIL m=${m} ${spec.label}: rel ${cmp.relError.toExponential(3)}, unwritten ${cmp.nonFinite} (first at ${cmp.firstNonFinite}), guards ${guardsIntact ? "intact" : "OVERWRITTEN"}, reference vs fp64 ${referenceRelError?.toExponential(2) ?? "-"}`,
              );
            }
          } catch (error) {
            row.error = message(error);
            options.log(`  FAIL m=${m} ${spec.label}: ${row.error}`);
            if (isStickyCudaError(error)) return true;
          }
        }
      } finally {
        out.dispose();
        A.dispose();
      }
    }
    synchronize();
    return false;
  } catch (error) {
    rows.push({
      k,
      n,
      groupsize: c.groupsize,
      m: 0,
      label: "setup",
      requested: {},
      reference: "cublas-f32",
      pass: false,
      error: message(error),
    });
    options.log(`  FAIL setup k=${k} n=${n} g=${c.groupsize}: ${message(error)}`);
    return isStickyCudaError(error);
  } finally {
    for (const t of owned) t.dispose();
  }
}

/**
 * Every m of the acceptance sweep. 129..224 reach each Hopper slice height of that range on sm_90 (the rows
 * rounded up to 16: 144, 160, 176, 192, 208, 224); 320 and 400 two such slices in one launch (160 and 208
 * rows) on layers at least 3072 wide; 480 a 224-row tail after a 256-row slice on wide layers and four
 * 128-row slices in one launch on narrow ones.
 */
export const ALL_MS = [
  1, 2, 3, 4, 7, 8, 15, 16, 17, 24, 31, 32, 33, 48, 63, 64, 65, 96, 128, 129, 160, 176, 192, 200, 224, 256,
  320, 400, 480, 511, 1024, 4096,
];
export const QUICK_MS = [1, 7, 16, 17, 33, 64, 65, 129, 176, 256, 400, 480];

/** Tile shapes forced through opts, plus the automatic choice and the parallelism knobs. */
export function configSpecs(smCount: number, thorough: boolean): ConfigSpec[] {
  const specs: ConfigSpec[] = [{ label: "auto", opts: {} }];
  for (const tile of TRIRUN_TILES) {
    const maxM = tile.maxM;
    specs.push({
      label: `tile ${tile.threadK}x${tile.threadN}`,
      opts: { threadK: tile.threadK, threadN: tile.threadN },
      forM: maxM === undefined ? undefined : (m) => m <= maxM,
      forShape: (k, n) => n % tile.threadN === 0 && (tile.kernel === "small" || k % tile.threadK === 0),
    });
  }
  specs.push(
    { label: "maxParallel 1", opts: { maxParallel: 1 }, forM: (m) => m > 64 },
    {
      label: "maxParallel 3, 64x256",
      opts: { maxParallel: 3, threadK: 64, threadN: 256 },
      forM: (m) => m > 128,
    },
  );
  if (thorough) {
    specs.push(
      { label: "sms 3", opts: { sms: 3 }, forM: (m) => [1, 16, 17, 65, 200].includes(m) },
      {
        label: `sms ${smCount - 1}`,
        opts: { sms: Math.max(1, smCount - 1) },
        forM: (m) => [1, 8, 33, 129].includes(m),
      },
    );
  }
  return specs;
}

export function summarize(rows: readonly CorrectnessRow[]): {
  runs: number;
  failed: number;
  worstRelError: number;
  worstReferenceRelError: number;
  tiles: string[];
  /** Row blocks seen, e.g. "small 2x8" (two 8-row blocks), "general 4x16". */
  mBlocks: string[];
} {
  const tiles = new Set<string>();
  const mBlocks = new Set<string>();
  for (const r of rows) {
    if (r.used) {
      tiles.add(
        `${r.used.kernel} ${r.used.threadK}x${r.used.threadN}${r.groupsize === -1 ? " g=k" : " g=128"}`,
      );
      mBlocks.add(`${r.used.kernel} ${r.used.mBlocks}x${r.used.blockRows}`);
    }
  }
  return {
    runs: rows.length,
    failed: rows.filter((r) => !r.pass).length,
    worstRelError: Math.max(0, ...rows.map((r) => r.relError ?? 0)),
    worstReferenceRelError: Math.max(0, ...rows.map((r) => r.referenceRelError ?? 0)),
    tiles: [...tiles].sort(),
    mBlocks: [...mBlocks].sort(),
  };
}

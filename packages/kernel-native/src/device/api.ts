// GPU checks of the API itself: memory round trips, views and disposal,
// streams and events, error mapping (out of memory, misalignment), and the
// cuBLAS wrappers against fp64 CPU math in every transposition.
import { CudaError, DisposedError } from "../errors.js";
import { gemmF16, gemmF32, trirunMatmul } from "../matmul.js";
import { memoryInfo, synchronize } from "../device.js";
import { Event, Stream } from "../stream.js";
import { DeviceTensor } from "../tensor.js";
import { packScales, packWeights } from "./layout.js";
import {
  compare,
  dequantizeF16,
  f16ToF32,
  type Rng,
  randomActivations,
  randomCodes,
  randomScales,
} from "./numeric.js";

export interface ApiResult {
  name: string;
  pass: boolean;
  detail?: string;
}

type Check = (rng: Rng) => string | undefined; // a detail line; throws on failure

function expectThrow(fn: () => unknown, test: (e: unknown) => boolean, what: string): string {
  try {
    fn();
  } catch (error) {
    if (!test(error)) throw new Error(`${what}: unexpected error ${String(error)}`);
    return error instanceof Error ? error.message : String(error);
  }
  throw new Error(`${what}: did not throw`);
}

function assert(condition: boolean, message: string): void {
  if (!condition) throw new Error(message);
}

function f32Matmul(
  a: Float32Array,
  b: Float32Array,
  m: number,
  k: number,
  n: number,
  tA: boolean,
  tB: boolean,
): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let r = 0; r < k; r++) s += a[tA ? r * m + i : i * k + r] * b[tB ? j * k + r : r * n + j];
      out[i * n + j] = s;
    }
  }
  return out;
}

const CHECKS: [string, Check][] = [
  [
    "upload/download round trip for every dtype",
    (rng) => {
      const n = 1000;
      const arrays = [
        new Uint16Array(n).map(() => rng.nextU32() & 0xffff),
        new Float32Array(n).map(() => rng.next()),
        new Int32Array(n).map(() => rng.nextU32() | 0),
        new Uint8Array(n).map(() => rng.nextU32() & 0xff),
        new Int8Array(n).map(() => (rng.nextU32() & 0xff) - 128),
        new Uint32Array(n).map(() => rng.nextU32()),
      ];
      for (const data of arrays) {
        const t = DeviceTensor.fromArray(data, [10, 100]);
        const back = t.download();
        assert(back.constructor === data.constructor, `${t.dtype}: download type ${back.constructor.name}`);
        assert(Buffer.from(back.buffer).equals(Buffer.from(data.buffer)), `${t.dtype}: data differs`);
        t.dispose();
      }
      return undefined;
    },
  ],
  [
    "views share memory, keep the parent alive, and die with it",
    (rng) => {
      const data = randomActivations(rng, 64);
      const parent = DeviceTensor.fromArray(data, [8, 8]);
      const row = parent.view([8], 16);
      assert(
        Buffer.from((row.download() as Uint16Array).buffer).equals(
          Buffer.from(data.subarray(16, 24).slice().buffer),
        ),
        "view data",
      );
      row.upload(new Uint16Array(8).fill(0x3c00));
      const after = parent.download() as Uint16Array;
      assert(after[16] === 0x3c00 && after[23] === 0x3c00 && after[15] === data[15], "write through view");
      const z = DeviceTensor.zeros("f32", [3, 5]);
      assert(
        (z.download() as Float32Array).every((v) => v === 0),
        "zeros",
      );
      z.dispose();
      parent.dispose();
      assert(row.disposed, "a view of a disposed parent reports disposed");
      expectThrow(
        () => row.download(),
        (e) => e instanceof DisposedError,
        "view of disposed parent",
      );
      parent.dispose(); // idempotent
      return undefined;
    },
  ],
  [
    "copyFrom, fillBytes and streams/events",
    (rng) => {
      const data = randomActivations(rng, 1 << 20);
      const a = DeviceTensor.fromArray(data, [1 << 20]);
      const b = DeviceTensor.empty("f16", [1 << 20]);
      const stream = new Stream();
      const start = new Event();
      const end = new Event();
      start.record(stream);
      b.copyFrom(a, stream);
      end.record(stream);
      stream.synchronize();
      const ms = end.elapsedMs(start);
      assert(ms >= 0 && Number.isFinite(ms), `elapsedMs ${ms}`);
      assert(
        Buffer.from((b.download(stream) as Uint16Array).buffer).equals(Buffer.from(data.buffer)),
        "copy",
      );
      b.fillBytes(0x7e, stream);
      assert(
        (b.download(stream) as Uint16Array).every((v) => v === 0x7e7e),
        "fillBytes",
      );
      stream.dispose();
      expectThrow(
        () => b.copyFrom(a, stream),
        (e) => e instanceof DisposedError,
        "disposed stream",
      );
      for (const t of [a, b]) t.dispose();
      start.dispose();
      end.dispose();
      return `2 MiB copy ${ms.toFixed(3)} ms`;
    },
  ],
  [
    "copyRowsFrom copies strided rows",
    (rng) => {
      const [rows, columns, srcStride, dstStride] = [37, 100, 128, 112];
      const data = randomActivations(rng, rows * srcStride);
      const src = DeviceTensor.fromArray(data, [rows, srcStride]);
      const dst = DeviceTensor.zeros("f16", [rows, dstStride]);
      dst.copyRowsFrom(src, rows, columns, { srcStride, dstStride });
      const out = dst.download() as Uint16Array;
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < dstStride; c++) {
          const expected = c < columns ? data[r * srcStride + c] : 0;
          assert(out[r * dstStride + c] === expected, `row ${r} column ${c}`);
        }
      }
      src.dispose();
      dst.dispose();
      return undefined;
    },
  ],
  [
    "trirunMatmul on two streams at once (each stream has its own workspace)",
    (rng) => {
      const [k, n, m] = [256, 1024, 20];
      const codes = randomCodes(rng, k * n);
      const scales = randomScales(rng, (k / 128) * n);
      const B = DeviceTensor.fromArray(packWeights(codes, k, n), [k / 16, n], "i32");
      const s = DeviceTensor.fromArray(packScales(scales, k / 128, n), [k / 128, n], "f16");
      const W = DeviceTensor.fromArray(dequantizeF16(codes, scales, k, n, 128), [k, n], "f16");
      const streams = [new Stream(), new Stream()];
      const inputs = streams.map(() => DeviceTensor.fromArray(randomActivations(rng, m * k), [m, k]));
      const outputs = streams.map(() => DeviceTensor.empty("f16", [m, n]));
      let worst = 0;
      try {
        for (let round = 0; round < 10; round++) {
          streams.forEach((stream, i) => {
            outputs[i].fillBytes(0x7e, stream);
            trirunMatmul(inputs[i], B, s, outputs[i], { stream });
          });
        }
        for (const [i, stream] of streams.entries()) {
          stream.synchronize();
          const ref = DeviceTensor.empty("f32", [m, n]);
          gemmF16(inputs[i], W, ref);
          const cmp = compare(outputs[i].download() as Uint16Array, ref.download() as Float32Array);
          ref.dispose();
          assert(
            cmp.nonFinite === 0 && cmp.relError <= 1e-3,
            `stream ${i}: rel error ${cmp.relError}, unwritten ${cmp.nonFinite}`,
          );
          worst = Math.max(worst, cmp.relError);
        }
      } finally {
        for (const t of [B, s, W, ...inputs, ...outputs]) t.dispose();
        for (const stream of streams) stream.dispose();
      }
      return `worst rel error ${worst.toExponential(2)}`;
    },
  ],
  [
    "out of memory is a CudaError cudaErrorMemoryAllocation naming the bytes",
    () => {
      const bytes = memoryInfo().totalBytes * 4;
      const msg = expectThrow(
        () => DeviceTensor.empty("u8", [bytes]),
        (e) => e instanceof CudaError && e.code === "cudaErrorMemoryAllocation",
        "huge allocation",
      );
      assert(msg.includes(String(bytes)), `message lacks the byte count: ${msg}`);
      // The device must still work afterwards.
      const t = DeviceTensor.zeros("f32", [4]);
      t.dispose();
      synchronize();
      return msg;
    },
  ],
  [
    "trirunMatmul rejects misaligned views, bad shapes and disposed tensors before launching",
    () => {
      const k = 256;
      const n = 256;
      const A = DeviceTensor.zeros("f16", [4 * k + 8]);
      const B = DeviceTensor.zeros("i32", [k / 16, n]);
      const s = DeviceTensor.zeros("f16", [k / 128, n]);
      const C = DeviceTensor.zeros("f16", [4, n]);
      const misaligned = A.view([4, k], 4); // 8 bytes in
      const lines = [
        expectThrow(
          () => trirunMatmul(misaligned, B, s, C),
          (e) => e instanceof RangeError && /^A: data must be 16-byte aligned/.test(e.message),
          "misaligned A",
        ),
        expectThrow(
          () => trirunMatmul(A.view([4, k]), B, s, C.view([2, n])),
          (e) => e instanceof RangeError,
          "C shape",
        ),
        expectThrow(
          () => trirunMatmul(A.view([4, k]), B, s, A.view([4, n])),
          (e) => e instanceof RangeError && /share memory/.test(e.message),
          "aliasing",
        ),
      ];
      const view = A.view([4, k]);
      s.dispose();
      lines.push(
        expectThrow(
          () => trirunMatmul(view, B, s, C),
          (e) => e instanceof DisposedError,
          "disposed s",
        ),
      );
      for (const t of [A, B, C]) t.dispose();
      return lines.join(" | ");
    },
  ],
  [
    "gemmF32 matches fp64 in every transposition; gemmF16 with transposeW",
    (rng) => {
      const [m, k, n] = [5, 70, 33];
      let worst = 0;
      for (const tA of [false, true]) {
        for (const tB of [false, true]) {
          const a = new Float32Array(m * k).map(() => rng.next() - 0.5);
          const b = new Float32Array(k * n).map(() => rng.next() - 0.5);
          const A = DeviceTensor.fromArray(a, tA ? [k, m] : [m, k]);
          const B = DeviceTensor.fromArray(b, tB ? [n, k] : [k, n]);
          const c0 = new Float32Array(m * n).map(() => rng.next());
          const C = DeviceTensor.fromArray(c0, [m, n]);
          gemmF32(A, B, C, { transposeA: tA, transposeB: tB, alpha: 0.5, beta: 2 });
          const ref = f32Matmul(a, b, m, k, n, tA, tB).map((v, i) => 0.5 * v + 2 * c0[i]);
          const rel = compare(C.download() as Float32Array, ref).relError;
          worst = Math.max(worst, rel);
          assert(rel < 1e-5, `gemmF32 tA=${tA} tB=${tB}: rel error ${rel}`);
          for (const t of [A, B, C]) t.dispose();
        }
      }
      // gemmF16: W given as (n, k) (a Linear weight) with transposeW.
      const a16 = randomActivations(rng, m * k);
      const wt = randomActivations(rng, n * k);
      const A = DeviceTensor.fromArray(a16, [m, k]);
      const Wt = DeviceTensor.fromArray(wt, [n, k]);
      const C = DeviceTensor.empty("f32", [m, n]);
      gemmF16(A, Wt, C, { transposeW: true });
      const ref = new Float64Array(m * n);
      for (let i = 0; i < m; i++)
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let r = 0; r < k; r++) s += f16ToF32(a16[i * k + r]) * f16ToF32(wt[j * k + r]);
          ref[i * n + j] = s;
        }
      const rel16 = compare(C.download() as Float32Array, ref).relError;
      assert(rel16 < 1e-5, `gemmF16 transposeW: rel error ${rel16}`);
      for (const t of [A, Wt, C]) t.dispose();
      return `worst gemmF32 rel error ${worst.toExponential(2)}, gemmF16^T ${rel16.toExponential(2)}`;
    },
  ],
];

export function runApiChecks(rng: Rng, log: (line: string) => void): ApiResult[] {
  const results: ApiResult[] = [];
  for (const [name, check] of CHECKS) {
    try {
      const detail = check(rng);
      results.push({ name, pass: true, detail });
      log(`api ok   ${name}${detail ? `: ${detail}` : ""}`);
    } catch (error) {
      const detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      results.push({ name, pass: false, detail });
      log(`api FAIL ${name}: ${detail}`);
    }
  }
  return results;
}

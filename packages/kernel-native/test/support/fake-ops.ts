// Host emulation of the addon's model ops (src/addon/ops.cc entry points) for
// the host-memory stand-in, so that the GPU test of the ops (its references,
// tolerances, guard zones and the argument order of src/ops.ts) runs on
// machines without a GPU. It follows the documented semantics of ops.h with
// fp64 math and one fp16 rounding per output; it says nothing about the CUDA
// kernels themselves.
import { f16ToF32, toF16Bits } from "../../src/device/numeric.js";
import type { NativeAddon, NativeBuffer } from "../../src/native.js";
import { withFakeGraphs } from "./fake-native.js";

type Ctor = Uint16Array | Float32Array | Int32Array;

/** A typed view of `count` elements at `offset`, bounds- and alignment-checked like the addon. */
function view<T extends Ctor>(
  make: (buffer: ArrayBuffer, offset: number, count: number) => T,
  size: number,
  buffer: NativeBuffer,
  offset: number,
  count: number,
  name: string,
): T {
  const bytes = (buffer as unknown as { bytes?: Uint8Array }).bytes;
  if (bytes === undefined || buffer.freed) throw new TypeError(`${name}: expected a live device buffer`);
  if (!Number.isInteger(offset) || offset < 0 || offset + count * size > buffer.byteLength) {
    throw new RangeError(`${name}: bytes outside the buffer`);
  }
  if (offset % size !== 0) throw new RangeError(`${name}: misaligned`);
  return make(bytes.buffer as ArrayBuffer, bytes.byteOffset + offset, count);
}

const half = (b: NativeBuffer, o: number, n: number, name: string) =>
  view((buf, off, c) => new Uint16Array(buf, off, c), 2, b, o, n, name);
const f32 = (b: NativeBuffer, o: number, n: number, name: string) =>
  view((buf, off, c) => new Float32Array(buf, off, c), 4, b, o, n, name);
const i32 = (b: NativeBuffer, o: number, n: number, name: string) =>
  view((buf, off, c) => new Int32Array(buf, off, c), 4, b, o, n, name);

/** Logits as numbers, fp16 or fp32. */
function logitsOf(b: NativeBuffer, o: number, isF32: boolean, n: number): (i: number) => number {
  if (isF32) {
    const v = f32(b, o, n, "logits");
    return (i) => v[i];
  }
  const v = half(b, o, n, "logits");
  return (i) => f16ToF32(v[i]);
}

function rowLogSumExp(at: (i: number) => number, base: number, vocab: number): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let j = 0; j < vocab; j++) max = Math.max(max, at(base + j));
  let sum = 0;
  for (let j = 0; j < vocab; j++) sum += Math.exp(at(base + j) - max);
  return max + Math.log(sum);
}

const NAN_F16 = 0x7e00;

/** RoPE in place on rows (tokens, heads, d) of fp16 bits, token t at position p[t]: fp64, one fp16 rounding per output. */
function ropeRows(
  xv: Uint16Array,
  p: ArrayLike<number>,
  tokens: number,
  heads: number,
  d: number,
  theta: number,
  style: number,
): void {
  for (let t = 0; t < tokens; t++) {
    for (let h = 0; h < heads; h++) {
      const base = (t * heads + h) * d;
      for (let i = 0; i < d / 2; i++) {
        const angle = p[t] * theta ** ((-2 * i) / d);
        const a = base + (style === 0 ? 2 * i : i);
        const b = base + (style === 0 ? 2 * i + 1 : i + d / 2);
        const x0 = f16ToF32(xv[a]);
        const x1 = f16ToF32(xv[b]);
        xv[a] = toF16Bits(x0 * Math.cos(angle) - x1 * Math.sin(angle));
        xv[b] = toF16Bits(x0 * Math.sin(angle) + x1 * Math.cos(angle));
      }
    }
  }
}

/** Causal GQA of q rows (nq, hq, d) at positions start.. over k/v rows (>= start + nq, hkv, d) into o, fp64. */
function attend(
  qv: Uint16Array,
  kv: Uint16Array,
  vv: Uint16Array,
  o: Uint16Array,
  nq: number,
  start: number,
  hq: number,
  hkv: number,
  d: number,
): void {
  const scale = 1 / Math.sqrt(d);
  for (let i = 0; i < nq; i++) {
    for (let h = 0; h < hq; h++) {
      const kh = Math.floor(h / (hq / hkv));
      const last = start + i;
      const w = new Float64Array(last + 1);
      for (let s = 0; s <= last; s++) {
        let dot = 0;
        for (let j = 0; j < d; j++)
          dot += f16ToF32(qv[(i * hq + h) * d + j]) * f16ToF32(kv[(s * hkv + kh) * d + j]);
        w[s] = dot * scale;
      }
      const max = Math.max(...w);
      let sum = 0;
      for (let s = 0; s <= last; s++) {
        w[s] = Math.exp(w[s] - max);
        sum += w[s];
      }
      for (let j = 0; j < d; j++) {
        let acc = 0;
        for (let s = 0; s <= last; s++) acc += w[s] * f16ToF32(vv[(s * hkv + kh) * d + j]);
        o[(i * hq + h) * d + j] = toF16Bits(acc / sum);
      }
    }
  }
}

/** `addon` with the ops entry points added. */
export function withFakeOps(addon: NativeAddon): NativeAddon {
  const ops = {
    opsEmbedding(
      ids: NativeBuffer,
      io: number,
      table: NativeBuffer,
      to: number,
      out: NativeBuffer,
      oo: number,
      n: number,
      vocab: number,
      dim: number,
    ): void {
      const id = i32(ids, io, n, "ids");
      const t = half(table, to, vocab * dim, "table");
      const o = half(out, oo, n * dim, "out");
      for (let r = 0; r < n; r++) {
        const bad = id[r] < 0 || id[r] >= vocab;
        for (let j = 0; j < dim; j++) o[r * dim + j] = bad ? NAN_F16 : t[id[r] * dim + j];
      }
    },
    opsAddRmsNorm(
      x: NativeBuffer,
      xo: number,
      d: NativeBuffer,
      dOff: number,
      w: NativeBuffer,
      wo: number,
      wF32: boolean,
      out: NativeBuffer,
      oo: number,
      rows: number,
      dim: number,
      eps: number,
      _stream: unknown,
      quantizeBits: number,
    ): void {
      ops.opsAdd(x, xo, d, dOff, x, xo, rows * dim);
      ops.opsRmsNorm(x, xo, w, wo, wF32, out, oo, rows, dim, eps, null, quantizeBits);
    },
    opsRelu2MulRmsNorm(
      g: NativeBuffer,
      go: number,
      u: NativeBuffer,
      uo: number,
      w: NativeBuffer,
      wo: number,
      wF32: boolean,
      out: NativeBuffer,
      oo: number,
      rows: number,
      dim: number,
      eps: number,
      _stream: unknown,
      quantizeBits: number,
    ): void {
      ops.opsRelu2Mul(g, go, u, uo, out, oo, rows * dim);
      ops.opsRmsNorm(out, oo, w, wo, wF32, out, oo, rows, dim, eps, null, quantizeBits);
    },
    opsRmsNorm(
      x: NativeBuffer,
      xo: number,
      w: NativeBuffer,
      wo: number,
      wF32: boolean,
      out: NativeBuffer,
      oo: number,
      rows: number,
      dim: number,
      eps: number,
      _stream: unknown,
      quantizeBits: number,
    ): void {
      if (quantizeBits !== 0 && !(Number.isInteger(quantizeBits) && quantizeBits >= 2 && quantizeBits <= 8)) {
        throw new RangeError(`quantizeBits: expected 2..8 (or 0: none), got ${quantizeBits}`);
      }
      const xv = half(x, xo, rows * dim, "x");
      const weight = wF32
        ? Array.from(f32(w, wo, dim, "weight"))
        : Array.from(half(w, wo, dim, "weight"), f16ToF32);
      const o = half(out, oo, rows * dim, "out");
      for (let r = 0; r < rows; r++) {
        const row = Array.from(xv.subarray(r * dim, (r + 1) * dim), f16ToF32);
        const inv = 1 / Math.sqrt(row.reduce((s, v) => s + v * v, 0) / dim + eps);
        for (let j = 0; j < dim; j++) o[r * dim + j] = toF16Bits(row[j] * inv * weight[j]);
      }
      if (quantizeBits !== 0) ops.opsQuantizeRows(out, oo, out, oo, rows, dim, quantizeBits);
    },
    opsRope(
      x: NativeBuffer,
      xo: number,
      pos: NativeBuffer,
      po: number,
      tokens: number,
      heads: number,
      d: number,
      theta: number,
      style: number,
    ): void {
      ropeRows(
        half(x, xo, tokens * heads * d, "x"),
        i32(pos, po, tokens, "positions"),
        tokens,
        heads,
        d,
        theta,
        style,
      );
    },
    opsSiluMul(
      g: NativeBuffer,
      go: number,
      u: NativeBuffer,
      uo: number,
      out: NativeBuffer,
      oo: number,
      n: number,
    ): void {
      const gv = half(g, go, n, "gate");
      const uv = half(u, uo, n, "up");
      const o = half(out, oo, n, "out");
      for (let i = 0; i < n; i++) {
        const x = f16ToF32(gv[i]);
        o[i] = toF16Bits((x / (1 + Math.exp(-x))) * f16ToF32(uv[i]));
      }
    },
    opsQuantizeRows(
      x: NativeBuffer,
      xo: number,
      out: NativeBuffer,
      oo: number,
      rows: number,
      dim: number,
      bits: number,
    ): void {
      const xv = half(x, xo, rows * dim, "x");
      const o = half(out, oo, rows * dim, "out");
      const q = 2 ** (bits - 1) - 1;
      for (let r = 0; r < rows; r++) {
        let max = 0;
        for (let j = 0; j < dim; j++) max = Math.max(max, Math.abs(f16ToF32(xv[r * dim + j])));
        const s = Math.fround(q / Math.max(max, Math.fround(1e-5)));
        for (let j = 0; j < dim; j++) {
          const t = Math.fround(f16ToF32(xv[r * dim + j]) * s);
          let level = Math.round(t);
          if (level - t === 0.5 && level % 2 !== 0) level -= 1;
          o[r * dim + j] = toF16Bits(Math.fround(Math.min(Math.max(level, -q - 1), q) / s));
        }
      }
    },
    opsRelu2Mul(
      g: NativeBuffer,
      go: number,
      u: NativeBuffer,
      uo: number,
      out: NativeBuffer,
      oo: number,
      n: number,
    ): void {
      const gv = half(g, go, n, "gate");
      const uv = half(u, uo, n, "up");
      const o = half(out, oo, n, "out");
      for (let i = 0; i < n; i++) {
        const x = Math.max(f16ToF32(gv[i]), 0);
        o[i] = toF16Bits(Math.fround(x * x * f16ToF32(uv[i]))); // fp32 product, as the kernel's
      }
    },
    opsAdd(
      a: NativeBuffer,
      ao: number,
      b: NativeBuffer,
      bo: number,
      out: NativeBuffer,
      oo: number,
      n: number,
    ): void {
      const av = half(a, ao, n, "a");
      const bv = half(b, bo, n, "b");
      const o = half(out, oo, n, "out");
      for (let i = 0; i < n; i++) o[i] = toF16Bits(f16ToF32(av[i]) + f16ToF32(bv[i]));
    },
    opsAttention(
      q: NativeBuffer,
      qo: number,
      k: NativeBuffer,
      ko: number,
      v: NativeBuffer,
      vo: number,
      out: NativeBuffer,
      oo: number,
      nq: number,
      start: number,
      kvRows: number,
      hq: number,
      hkv: number,
      d: number,
    ): void {
      if (start < 0 || start + nq > kvRows || hq % hkv !== 0) throw new RangeError("attention: bad sizes");
      attend(
        half(q, qo, nq * hq * d, "q"),
        half(k, ko, kvRows * hkv * d, "k"),
        half(v, vo, kvRows * hkv * d, "v"),
        half(out, oo, nq * hq * d, "out"),
        nq,
        start,
        hq,
        hkv,
        d,
      );
    },
    opsCacheAppend(
      src: NativeBuffer,
      so: number,
      cache: NativeBuffer,
      co: number,
      n: number,
      start: number,
      rows: number,
      hkv: number,
      d: number,
    ): void {
      if (start < 0 || start + n > rows) throw new RangeError("cacheAppend: rows outside the cache");
      const from = half(src, so, n * hkv * d, "src");
      half(cache, co, rows * hkv * d, "cache").set(from, start * hkv * d);
    },
    opsCacheAppendKvBatch(
      ks: NativeBuffer,
      kso: number,
      kc: NativeBuffer,
      kco: number,
      vs: NativeBuffer,
      vso: number,
      vc: NativeBuffer,
      vco: number,
      pos: NativeBuffer,
      po: number,
      batch: number,
      maxT: number,
      hkv: number,
      d: number,
    ): void {
      ops.opsCacheAppendBatch(ks, kso, kc, kco, pos, po, batch, maxT, hkv, d);
      ops.opsCacheAppendBatch(vs, vso, vc, vco, pos, po, batch, maxT, hkv, d);
    },
    opsCacheAppendBatch(
      src: NativeBuffer,
      so: number,
      cache: NativeBuffer,
      co: number,
      pos: NativeBuffer,
      po: number,
      batch: number,
      maxT: number,
      hkv: number,
      d: number,
    ): void {
      const row = hkv * d;
      const from = half(src, so, batch * row, "src");
      const to = half(cache, co, batch * maxT * row, "cache");
      const p = i32(pos, po, batch, "positions");
      for (let b = 0; b < batch; b++) {
        if (p[b] < 0 || p[b] >= maxT) continue;
        to.set(from.subarray(b * row, (b + 1) * row), (b * maxT + p[b]) * row);
      }
    },
    opsAttentionDecodeBatch(
      q: NativeBuffer,
      qo: number,
      k: NativeBuffer,
      ko: number,
      v: NativeBuffer,
      vo: number,
      pos: NativeBuffer,
      po: number,
      out: NativeBuffer,
      oo: number,
      batch: number,
      maxT: number,
      hq: number,
      hkv: number,
      d: number,
    ): void {
      const p = i32(pos, po, batch, "positions");
      const cacheBytes = maxT * hkv * d * 2;
      half(k, ko, batch * maxT * hkv * d, "kCache");
      half(v, vo, batch * maxT * hkv * d, "vCache");
      for (let b = 0; b < batch; b++) {
        const qb = qo + b * hq * d * 2;
        const ob = oo + b * hq * d * 2;
        if (p[b] < 0 || p[b] >= maxT) {
          half(out, ob, hq * d, "out").fill(NAN_F16);
          continue;
        }
        ops.opsAttention(
          q,
          qb,
          k,
          ko + b * cacheBytes,
          v,
          vo + b * cacheBytes,
          out,
          ob,
          1,
          p[b],
          maxT,
          hq,
          hkv,
          d,
        );
      }
    },
    // RoPE on copies of q and kNew (the op only reads them), then what the
    // separate append and attention do: the same emulation, so the same bits.
    opsAttentionDecodeBatchRope(
      q: NativeBuffer,
      qo: number,
      kn: NativeBuffer,
      kno: number,
      vn: NativeBuffer,
      vno: number,
      k: NativeBuffer,
      ko: number,
      v: NativeBuffer,
      vo: number,
      pos: NativeBuffer,
      po: number,
      out: NativeBuffer,
      oo: number,
      batch: number,
      maxT: number,
      hq: number,
      hkv: number,
      d: number,
      theta: number,
      style: number,
    ): void {
      if (hq % hkv !== 0 || d % 2 !== 0 || !(theta > 1) || theta > 1e30 || (style !== 0 && style !== 1)) {
        throw new RangeError("attentionDecodeBatchRope: bad sizes or rope options");
      }
      const row = hkv * d;
      const qRot = Uint16Array.from(half(q, qo, batch * hq * d, "q"));
      const kRot = Uint16Array.from(half(kn, kno, batch * row, "kNew"));
      const vNew = half(vn, vno, batch * row, "vNew");
      const kc = half(k, ko, batch * maxT * row, "kCache");
      const vc = half(v, vo, batch * maxT * row, "vCache");
      const p = i32(pos, po, batch, "positions");
      const o = half(out, oo, batch * hq * d, "out");
      ropeRows(qRot, p, batch, hq, d, theta, style);
      ropeRows(kRot, p, batch, hkv, d, theta, style);
      for (let b = 0; b < batch; b++) {
        const ob = o.subarray(b * hq * d, (b + 1) * hq * d);
        if (p[b] < 0 || p[b] >= maxT) {
          ob.fill(NAN_F16);
          continue;
        }
        const kb = kc.subarray(b * maxT * row, (b + 1) * maxT * row);
        const vb = vc.subarray(b * maxT * row, (b + 1) * maxT * row);
        kb.set(kRot.subarray(b * row, (b + 1) * row), p[b] * row);
        vb.set(vNew.subarray(b * row, (b + 1) * row), p[b] * row);
        attend(qRot.subarray(b * hq * d, (b + 1) * hq * d), kb, vb, ob, 1, p[b], hq, hkv, d);
      }
    },
    opsLogSoftmax(
      l: NativeBuffer,
      lo: number,
      isF32: boolean,
      out: NativeBuffer,
      oo: number,
      rows: number,
      vocab: number,
    ): void {
      const at = logitsOf(l, lo, isF32, rows * vocab);
      const o = f32(out, oo, rows * vocab, "out");
      for (let r = 0; r < rows; r++) {
        const lse = rowLogSumExp(at, r * vocab, vocab);
        for (let j = 0; j < vocab; j++) o[r * vocab + j] = at(r * vocab + j) - lse;
      }
    },
    opsNll(
      l: NativeBuffer,
      lo: number,
      isF32: boolean,
      t: NativeBuffer,
      to: number,
      out: NativeBuffer,
      oo: number,
      rows: number,
      vocab: number,
    ): void {
      const at = logitsOf(l, lo, isF32, rows * vocab);
      const targets = i32(t, to, rows, "targets");
      const o = f32(out, oo, rows, "out");
      for (let r = 0; r < rows; r++) {
        const target = targets[r];
        o[r] =
          target < 0 || target >= vocab
            ? Number.NaN
            : rowLogSumExp(at, r * vocab, vocab) - at(r * vocab + target);
      }
    },
  };
  // As the addon's ops do (UseDevice): the first operand's device becomes the current one, and stays.
  const onOperandDevice = Object.fromEntries(
    Object.entries(ops).map(([name, op]) => [
      name,
      (...args: unknown[]) => {
        const operand = args.find(
          (a): a is NativeBuffer => typeof a === "object" && a !== null && "bytes" in a && "device" in a,
        );
        if (operand !== undefined) addon.setDevice(operand.device);
        return (op as (...a: unknown[]) => unknown)(...args);
      },
    ]),
  ) as typeof ops;
  return withFakeGraphs(Object.assign(addon, onOperandDevice));
}

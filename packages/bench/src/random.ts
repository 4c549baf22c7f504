/**
 * Seeded random host data for benchmark inputs.
 *
 * Inputs are never zeros (zeros let the GPU draw less power and can flatter both
 * sides), so every buffer is filled with random data uploaded from the host. The
 * data needs no statistical quality, only to be non-trivial and fast to make.
 */
import { setFloat16 } from "@petamoriken/float16";

/** A small, fast seeded generator (sfc32) returning unsigned 32-bit integers. */
export class RandomSource {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
      throw new RangeError(`seed must be an integer in [0, 2^32 - 1], got ${String(seed)}`);
    }
    this.a = 0x9e3779b9;
    this.b = 0x243f6a88;
    this.c = 0xb7e15162;
    this.d = seed >>> 0;
    for (let i = 0; i < 16; i++) this.nextUint32();
  }

  nextUint32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1). */
  nextFloat(): number {
    return this.nextUint32() / 4294967296;
  }

  /** Uniform integer in [0, bound). */
  nextBelow(bound: number): number {
    return Math.floor(this.nextFloat() * bound);
  }

  /** Fills `target` with random 32-bit words (any bit pattern is a valid 2-bit code word). */
  fillUint32(target: Uint32Array | Int32Array): void {
    for (let i = 0; i < target.length; i++) target[i] = this.nextUint32();
  }
}

/** fp16 bit patterns of `count` values drawn uniformly from [low, high]. */
export function randomFloat16Values(
  random: RandomSource,
  count: number,
  low: number,
  high: number,
): Uint16Array {
  if (!(high >= low) || !Number.isFinite(low) || !Number.isFinite(high)) {
    throw new RangeError(`randomFloat16Values: need finite low <= high, got [${low}, ${high}]`);
  }
  const bits = new Uint16Array(count);
  const view = new DataView(bits.buffer);
  for (let i = 0; i < count; i++) {
    setFloat16(view, i * 2, low + (high - low) * random.nextFloat(), true);
  }
  return bits;
}

/** Distinct values drawn once; larger host buffers are assembled from them by random index. */
const FLOAT16_POOL_SIZE = 1 << 14;

/**
 * fp16 bit patterns of `count` values uniform in [low, high], assembled by random picks
 * from a pool of distinct values (converting every value to fp16 one by one is slow).
 */
export function randomFloat16Buffer(
  random: RandomSource,
  count: number,
  low: number,
  high: number,
): Uint16Array {
  const pool = randomFloat16Values(random, Math.min(count, FLOAT16_POOL_SIZE), low, high);
  if (pool.length === count) return pool;
  const out = new Uint16Array(count);
  const mask = FLOAT16_POOL_SIZE - 1;
  for (let i = 0; i < count; i++) out[i] = pool[random.nextUint32() & mask];
  return out;
}

/** A new random 32-bit seed from the platform's generator. */
export function freshSeed(): number {
  return Math.floor(Math.random() * 4294967296) >>> 0;
}

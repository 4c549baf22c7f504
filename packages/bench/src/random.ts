/**
 * Seeded random host data for benchmark inputs.
 *
 * Inputs are never zeros (zeros let the GPU draw less power and can flatter both
 * sides), so every buffer is filled with random data uploaded from the host. The
 * data needs no statistical quality, only to be non-trivial and fast to make.
 */
import { setFloat16 } from "@petamoriken/float16";
import { xoroshiro128plus } from "pure-rand/generator/xoroshiro128plus";

type RandomGenerator = ReturnType<typeof xoroshiro128plus>;

/** A seeded generator (pure-rand's xoroshiro128+) returning unsigned 32-bit integers. */
export class RandomSource {
  readonly #generator: RandomGenerator;

  constructor(seed: number) {
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
      throw new RangeError(`seed must be an integer in [0, 2^32 - 1], got ${String(seed)}`);
    }
    this.#generator = xoroshiro128plus(seed | 0);
  }

  nextUint32(): number {
    return this.#generator.next() >>> 0;
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

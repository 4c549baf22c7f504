import { onTestFailed } from "vitest";

/** A seeded generator (mulberry32) with normal draws; a fresh seed each run unless GPTQ_TEST_SEED is set. */
export class Rng {
  private state: number;
  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  normal(): number {
    const u = 1 - this.next();
    const v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  normals(count: number, scale = 1): Float32Array {
    const a = new Float32Array(count);
    for (let i = 0; i < count; i++) a[i] = this.normal() * scale;
    return a;
  }
  int(max: number): number {
    return Math.floor(this.next() * max);
  }
}

/** A fresh generator for the current test; its seed is printed if the test fails. */
export function testRng(): Rng {
  const fixed = process.env.GPTQ_TEST_SEED;
  const seed = fixed !== undefined ? Number(fixed) : Math.floor(Math.random() * 2 ** 31);
  onTestFailed(() => {
    console.error(`random seed of the failed test: ${seed} (rerun with GPTQ_TEST_SEED=${seed})`);
  });
  return new Rng(seed);
}

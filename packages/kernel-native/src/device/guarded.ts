// Output buffers with guard zones: C is a view into a larger allocation whose
// every byte is poisoned (0x7e: f16 0x7e7e is a NaN) before each run, so that
// unwritten elements show up as NaN and writes outside C show up in the guards.
import { DeviceTensor } from "../tensor.js";

const GUARD_ELEMENTS = 512; // 1 KiB of f16 on each side; keeps C 16-byte aligned
export const POISON_BYTE = 0x7e;

export class GuardedOutput {
  readonly parent: DeviceTensor;
  readonly tensor: DeviceTensor;
  constructor(
    readonly m: number,
    readonly n: number,
  ) {
    this.parent = DeviceTensor.empty("f16", [m * n + 2 * GUARD_ELEMENTS]);
    this.tensor = this.parent.view([m, n], GUARD_ELEMENTS);
  }
  poison(): void {
    this.parent.fillBytes(POISON_BYTE);
  }
  /** Downloads C and reports whether both guard zones are untouched. */
  read(): { c: Uint16Array; guardsIntact: boolean } {
    const all = this.parent.download() as Uint16Array;
    const pattern = (POISON_BYTE << 8) | POISON_BYTE;
    let intact = true;
    for (let i = 0; i < GUARD_ELEMENTS; i++) {
      if (all[i] !== pattern || all[all.length - 1 - i] !== pattern) {
        intact = false;
        break;
      }
    }
    return { c: all.subarray(GUARD_ELEMENTS, GUARD_ELEMENTS + this.m * this.n), guardsIntact: intact };
  }
  dispose(): void {
    this.tensor.dispose();
    this.parent.dispose();
  }
}

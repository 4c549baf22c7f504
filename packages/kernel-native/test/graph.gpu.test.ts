/**
 * CUDA graphs (captureGraph): a captured step (TriRun matmul -> elementwise op -> cuBLAS GEMM) replays
 * with fresh inputs and gives exactly what the same calls give eagerly, and both agree with an fp64 CPU
 * reference; what cannot be captured is refused with a clear error and leaves the addon usable. Fresh
 * random inputs each run. Skips (with a note) where no usable CUDA device exists.
 */
import { describe, expect, it } from "vitest";
import { packScales, packWeights } from "../src/device/layout.js";
import {
  compare,
  dequantizeF16,
  f16ToF32,
  matmulF64,
  randomActivations,
  randomCodes,
  randomScales,
  Rng,
  toF16Bits,
} from "../src/device/numeric.js";
import {
  available,
  CudaGraph,
  captureGraph,
  DeviceTensor,
  devices,
  gemmF16,
  ops,
  Stream,
  synchronize,
  trirunMatmul,
  unavailableReason,
} from "../src/index.js";

const gpu = available();
if (!gpu)
  console.log(`@trirun/kernel-native graph GPU tests skipped: ${unavailableReason() ?? "no CUDA device"}`);
/** The host stand-in has no kernel workspace to reallocate; those checks need the real addon. */
const realDevice = gpu && !devices()[0].name.startsWith("Fake");

const seed = (Math.random() * 2 ** 32) >>> 0;
const rng = new Rng(seed);

/** Columns of the cuBLAS output z. */
const OUT = 256;

/** One "layer step": y = (x W1) + x2, z = y W2 with W2 (n, 256) (TriRun, then add, then cuBLAS), all device tensors. */
function makeStep(m: number, k: number, n: number) {
  const codes = randomCodes(rng, k * n);
  const scales = randomScales(rng, (k / 128) * n);
  const B = DeviceTensor.fromArray(packWeights(codes, k, n), [k / 16, n], "i32");
  const s = DeviceTensor.fromArray(packScales(scales, k / 128, n), [k / 128, n], "f16");
  const w1 = dequantizeF16(codes, scales, k, n, 128);
  const w2 = randomActivations(rng, n * OUT).map((b) => b & 0xbfff); // keep |w| <= 2
  const W2 = DeviceTensor.fromArray(w2, [n, OUT], "f16");
  const x = DeviceTensor.empty("f16", [m, k]);
  const x2 = DeviceTensor.empty("f16", [m, n]);
  const y = DeviceTensor.empty("f16", [m, n]);
  const z = DeviceTensor.empty("f16", [m, OUT]);
  const run = (): void => {
    trirunMatmul(x, B, s, y);
    ops.add(y, x2, y);
    gemmF16(y, W2, z);
  };
  /** fp64 reference of z for host inputs (y rounded to fp16 in between, as on the device). */
  const reference = (xa: Uint16Array, x2a: Uint16Array): Float64Array => {
    const y64 = matmulF64(xa, w1, m, k, n);
    const yBits = new Uint16Array(m * n);
    for (let i = 0; i < m * n; i++) {
      yBits[i] = toF16Bits(f16ToF32(toF16Bits(y64[i])) + f16ToF32(x2a[i]));
    }
    return matmulF64(yBits, w2, m, n, OUT);
  };
  const tensors = [B, s, W2, x, x2, y, z];
  return {
    x,
    x2,
    y,
    z,
    run,
    reference,
    dispose: () => {
      for (const t of tensors) t.dispose();
    },
  };
}

describe.skipIf(!gpu)(`CUDA graphs (seed ${seed})`, () => {
  it("a captured step replays with new inputs, equal to eager runs and to the fp64 reference", () => {
    const m = 1 + Math.floor(rng.next() * 16);
    const [k, n] = [512, 256];
    const step = makeStep(m, k, n);
    try {
      const inputs = () => ({ x: randomActivations(rng, m * k), x2: randomActivations(rng, m * n) });
      // Warm-up (allocates the kernel workspace and cuBLAS state), then capture.
      const first = inputs();
      step.x.upload(first.x);
      step.x2.upload(first.x2);
      step.run();
      const eager = step.z.download() as Uint16Array;
      const graph = captureGraph(step.run);
      expect(graph).toBeInstanceOf(CudaGraph);
      expect(graph.nodes).toBeGreaterThanOrEqual(3);
      // Capturing ran nothing: z still holds the eager result.
      expect(Array.from(step.z.download() as Uint16Array)).toEqual(Array.from(eager));
      for (let r = 0; r < 3; r++) {
        const next = inputs();
        step.x.upload(next.x);
        step.x2.upload(next.x2);
        step.z.fillBytes(0x7e); // NaN poison: the replay must write every element
        graph.launch();
        const replayed = step.z.download() as Uint16Array;
        step.z.fillBytes(0x7e);
        step.run();
        const eagerAgain = step.z.download() as Uint16Array;
        expect(Array.from(replayed)).toEqual(Array.from(eagerAgain));
        const cmp = compare(replayed, step.reference(next.x, next.x2));
        expect(cmp.nonFinite).toBe(0);
        expect(cmp.relError).toBeLessThan(2e-3);
      }
      // A replay on a stream orders with that stream.
      const stream = new Stream();
      graph.launch(stream);
      stream.synchronize();
      stream.dispose();
      graph.dispose();
      expect(graph.disposed).toBe(true);
      expect(() => graph.launch()).toThrow(/disposed/);
    } finally {
      step.dispose();
    }
  });

  it("graphs replayed on two streams at once give what they give alone (they share the workspace they were captured with)", () => {
    // Deep, narrow layers: each output column is split over many blocks, which meet in the
    // kernel workspace (locks, partial sums); two replays using it at once would mix them.
    const steps = [makeStep(4, 8192, 256), makeStep(8, 8192, 256)];
    const streams = [new Stream(), new Stream()];
    try {
      const expected = steps.map((step) => {
        step.x.upload(randomActivations(rng, step.x.shape[0] * 8192));
        step.x2.upload(randomActivations(rng, step.x2.shape[0] * 256));
        step.run();
        return Array.from(step.z.download() as Uint16Array);
      });
      const graphs = steps.map((step) => captureGraph(step.run));
      // (The host stand-in runs everything in order and slowly: two rounds check the plumbing there.)
      for (let round = 0; round < (realDevice ? 20 : 2); round++) {
        for (const step of steps) step.z.fillBytes(0x7e);
        // No synchronisation between the two: the streams do not order with each other.
        graphs[0].launch(streams[0]);
        graphs[1].launch(streams[1]);
        for (const stream of streams) stream.synchronize();
        steps.forEach((step, i) => {
          expect(Array.from(step.z.download() as Uint16Array), `round ${round}, graph ${i}`).toEqual(
            expected[i],
          );
        });
      }
      for (const graph of graphs) graph.dispose();
    } finally {
      for (const stream of streams) stream.dispose();
      for (const step of steps) step.dispose();
    }
  });

  it("refuses uploads, downloads, synchronize, allocation, explicit streams and nesting inside a capture", () => {
    const step = makeStep(2, 256, 256);
    try {
      step.run();
      const stream = new Stream();
      const cases: [string, () => void, RegExp][] = [
        ["upload", () => step.x.upload(new Uint16Array(2 * 256)), /upload|captureGraph/],
        ["download", () => step.z.download(), /download|captureGraph/],
        ["synchronize", () => synchronize(), /synchronize|captureGraph/],
        ["stream", () => ops.add(step.y, step.x2, step.y, { stream }), /stream/],
        ["nested", () => captureGraph(step.run), /already|nest/],
        // cudaMalloc is not allowed while this thread captures (scratch must exist before a capture).
        ["allocation", () => DeviceTensor.empty("f16", [4, 256]).dispose(), /capturing|captureGraph/],
      ];
      for (const [name, bad, message] of cases) {
        expect(
          () =>
            captureGraph(() => {
              step.run();
              bad();
            }),
          name,
        ).toThrow(message);
        // The addon is still usable and the default stream is not left capturing.
        step.run();
        step.z.download();
      }
      const thrown = new Error("from the callback");
      expect(() =>
        captureGraph(() => {
          throw thrown;
        }),
      ).toThrow(thrown);
      stream.dispose();
      synchronize();
    } finally {
      step.dispose();
    }
  });

  it("refuses to replay after a tensor it uses was disposed", () => {
    const step = makeStep(1, 256, 256);
    step.run();
    const graph = captureGraph(step.run);
    graph.launch();
    step.x2.dispose();
    expect(() => graph.launch()).toThrow(/disposed/);
    graph.dispose();
    step.dispose();
  });

  it.skipIf(!realDevice)(
    "a workspace that would grow during a capture is refused; a grown one stales old graphs",
    () => {
      const small = makeStep(1, 256, 256);
      small.run();
      const graph = captureGraph(small.run);
      // A much wider problem needs a larger workspace than any call so far.
      const wide = makeStep(1, 256, 256 * 512);
      try {
        expect(() => captureGraph(wide.run)).toThrow(/workspace/);
        wide.run(); // eager: the workspace grows (reallocated)
        expect(() => graph.launch()).toThrow(/workspace/);
        const again = captureGraph(small.run);
        again.launch();
        synchronize();
        again.dispose();
      } finally {
        graph.dispose();
        small.dispose();
        wide.dispose();
      }
    },
  );
});

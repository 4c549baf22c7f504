/**
 * Several GPUs, on @trirun/kernel-native's host stand-in with two devices: new device memory goes to
 * the current device, so a layer whose weights live on device 1 must allocate its scratch, outputs
 * and fused weights there even while device 0 is current, leave the current device as it was, and
 * name the devices when given a tensor of another one. Skips, with a note, without esbuild.
 */
import { afterAll, describe, expect, it } from "vitest";

const support = new URL("../../kernel-native/test/support/fake-addon-file.ts", import.meta.url).href;
const { fakeAddonBundler } = (await import(support)) as {
  fakeAddonBundler():
    | { bundle(faults?: { devices?: number }): { file: string; dispose(): void }; skip?: undefined }
    | { skip: string };
};
const bundler = fakeAddonBundler();
if (bundler.skip !== undefined)
  console.log(`@trirun/layers multi-device host tests skipped: ${bundler.skip}`);
const fake = bundler.skip === undefined ? bundler.bundle({ devices: 2 }) : undefined;
if (fake !== undefined) {
  afterAll(fake.dispose);
  process.env.TRIRUN_NATIVE_PATH = fake.file;
}
const native = await import("@trirun/kernel-native");
const { DeviceTensor, currentDevice, setDevice } = native;
const { Float16Linear, TriRunLinear, hostTensor } = await import("../src/index.js");
const { decodeF16, encodeF16 } = await import("@trirun/packing");
const { makeRng, randomFloats, randomHalfBits, randomQuantized } = await import("./helpers.js");

const rng = makeRng();

describe.skipIf(fake === undefined)(`layers on device 1 while device 0 is current (seed ${rng.seed})`, () => {
  it("Float16Linear with a bias (input scratch) and TriRunLinear with padding run where their weights are", () => {
    const inF = 72;
    const outF = 40;
    const bits = Uint16Array.from({ length: inF * outF }, () => randomHalfBits(rng, 0.05));
    const bias = randomFloats(rng, outF);
    const q = randomQuantized(rng, inF, outF, -1);
    const cpuLayers = [
      Float16Linear.fromWeights(bits, outF, inF, bias, { backend: "cpu" }),
      TriRunLinear.fromQuantized({ ...q, inFeatures: inF, outFeatures: outF, bias }, { backend: "cpu" }),
    ];
    setDevice(1);
    const layers = [
      Float16Linear.fromWeights(bits, outF, inF, bias, { backend: "cuda" }),
      TriRunLinear.fromQuantized({ ...q, inFeatures: inF, outFeatures: outF, bias }, { backend: "cuda" }),
    ];
    const rows = 3;
    const x = Float32Array.from(decodeF16(encodeF16(randomFloats(rng, rows * inF))));
    const onOne = DeviceTensor.fromArray(encodeF16(x), [rows, inF], "f16");
    setDevice(0);
    const onZero = DeviceTensor.fromArray(encodeF16(x), [rows, inF], "f16");
    for (const [i, layer] of layers.entries()) {
      setDevice(0); // (this test's own downloads of device-1 tensors make device 1 current, as the addon does)
      const want = cpuLayers[i]?.forward(hostTensor([rows, inF], x)).data as Float32Array;
      const fromHost = layer.forward(hostTensor([rows, inF], x)).data;
      expect(currentDevice(), "the current device is left as it was").toBe(0);
      const fromDevice = layer.forward(onOne);
      expect(fromDevice.device).toBe(1);
      expect(currentDevice(), "the current device is left as it was").toBe(0);
      const got = decodeF16(fromDevice.download() as Uint16Array);
      for (const y of [fromHost, got]) {
        for (let j = 0; j < want.length; j++) {
          expect(Math.abs((y[j] as number) - (want[j] as number))).toBeLessThan(
            2e-3 * (1 + Math.abs(want[j] as number)),
          );
        }
      }
      fromDevice.dispose();
      expect(() => layer.forward(onZero)).toThrow(/x is on device 0, the layer's weights on device 1/);
      // Host copies of the weights come from device 1 and leave device 0 current.
      setDevice(0);
      const host =
        layer instanceof TriRunLinear ? layer.dequantize() : (layer as { weight: Float32Array }).weight;
      expect(host.length).toBe(inF * outF);
      expect(currentDevice(), "after reading the weights").toBe(0);
      layer.dispose();
    }
    onOne.dispose();
    onZero.dispose();
  });

  it("concat fuses layers of one device on that device and refuses layers of two", () => {
    const inF = 64;
    const make = (device: number, outF: number) => {
      setDevice(device);
      const layer = Float16Linear.fromWeights(
        Uint16Array.from({ length: inF * outF }, () => randomHalfBits(rng, 0.05)),
        outF,
        inF,
        undefined,
        { backend: "cuda" },
      );
      setDevice(0);
      return layer;
    };
    const parts = [make(1, 64), make(1, 128)];
    const fused = Float16Linear.concat(parts);
    expect(currentDevice(), "the current device is left as it was").toBe(0);
    const x = DeviceTensor.fromArray(encodeF16(randomFloats(rng, 2 * inF)), [2, inF], "f16");
    expect(() => fused.forward(x)).toThrow(/x is on device 0, the layer's weights on device 1/);
    expect(Array.from(fused.weight)).toEqual([...parts[0]!.weight, ...parts[1]!.weight]);
    const other = make(0, 64);
    expect(() => Float16Linear.concat([parts[0]!, other])).toThrow(
      /parts\[1\]: on device 0, parts\[0\] on device 1: fused layers must share a device/,
    );
    for (const l of [...parts, fused, other]) l.dispose();
    x.dispose();
  });
});

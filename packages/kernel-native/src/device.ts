// Device queries and whole-device operations.
import { requireNative } from "./native.js";

export interface DeviceInfo {
  index: number;
  name: string;
  /** "major.minor", e.g. "9.0" */
  computeCapability: string;
  major: number;
  minor: number;
  smCount: number;
  l2Bytes: number;
  memoryBytes: number;
  sharedMemPerBlockOptin: number;
  sharedMemPerSm: number;
  /** Theoretical DRAM bandwidth from the memory clock and bus width (bytes/s). */
  peakMemoryBandwidth: number;
  pciBusId: string;
}

const cache = new Map<number, DeviceInfo>();

/** Properties of device `index` (cached: they do not change). */
export function deviceInfo(index: number): DeviceInfo {
  const native = requireNative();
  const cached = cache.get(index);
  if (cached) return cached;
  const p = native.deviceProperties(index);
  const info: DeviceInfo = {
    index,
    name: p.name,
    computeCapability: `${p.major}.${p.minor}`,
    major: p.major,
    minor: p.minor,
    smCount: p.multiProcessorCount,
    l2Bytes: p.l2CacheSize,
    memoryBytes: p.totalGlobalMem,
    sharedMemPerBlockOptin: p.sharedMemPerBlockOptin,
    sharedMemPerSm: p.sharedMemPerMultiprocessor,
    // DDR: two transfers per clock.
    peakMemoryBandwidth: 2 * p.memoryClockKHz * 1000 * (p.memoryBusWidthBits / 8),
    pciBusId: p.pciBusId,
  };
  cache.set(index, Object.freeze(info));
  return info;
}

/** Every CUDA device of this machine. Throws NoCudaDeviceError when none is usable. */
export function devices(): DeviceInfo[] {
  const native = requireNative();
  const count = native.probe().count;
  return Array.from({ length: count }, (_, i) => deviceInfo(i));
}

/** Free and total memory of the current device. */
export function memoryInfo(): { freeBytes: number; totalBytes: number } {
  return requireNative().memoryInfo();
}

/** Waits for all work on the current device. */
export function synchronize(): void {
  requireNative().synchronize();
}

/** The device new tensors, streams and events are created on. */
export function currentDevice(): number {
  return requireNative().getDevice();
}

/** Selects the device for new tensors, streams and events. */
export function setDevice(index: number): void {
  const native = requireNative();
  const count = native.probe().count;
  if (!Number.isInteger(index) || index < 0 || index >= count) {
    throw new RangeError(`index: expected a device index 0..${count - 1}, got ${index}`);
  }
  native.setDevice(index);
}

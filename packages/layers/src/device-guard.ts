/** Multi-GPU: new device memory goes to the current device, so allocations for a layer name its device. */
import { currentDevice, setDevice } from "@trirun/kernel-native";

/** Runs `make` with `device` current, and the current device back after. */
export function onDevice<T>(device: number, make: () => T): T {
  const current = currentDevice();
  if (current === device) return make();
  setDevice(device);
  try {
    return make();
  } finally {
    setDevice(current);
  }
}

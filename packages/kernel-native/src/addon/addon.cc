// Entry point of the trirun_native addon: device queries and registration of
// the memory, stream/event, cuBLAS and kernel bindings.
#include <string>

#include "objects.h"

namespace trirun {

void RegisterCublasFunctions(Napi::Env env, Napi::Object exports);
void RegisterTrirunFunctions(Napi::Env env, Napi::Object exports);
void RegisterOpsFunctions(Napi::Env env, Napi::Object exports);
void RegisterGraphFunctions(Napi::Env env, Napi::Object exports);
void DestroyCublasHandles(AddonState& state);

namespace {

// probe(): never throws. { count, errorName?, errorMessage?, runtimeVersion, driverVersion }
Napi::Value Probe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  int runtimeVersion = 0, driverVersion = 0;
  cudaRuntimeGetVersion(&runtimeVersion);
  cudaDriverGetVersion(&driverVersion);
  out.Set("runtimeVersion", runtimeVersion);
  out.Set("driverVersion", driverVersion);
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    out.Set("count", 0);
    out.Set("errorName", cudaGetErrorName(err));
    out.Set("errorMessage", cudaGetErrorString(err));
  } else {
    out.Set("count", count);
  }
  return out;
}

// A device index argument, checked against the device count before it is narrowed to int
// (2^32 would otherwise become device 0).
int ArgDevice(const Napi::CallbackInfo& info, size_t index) {
  Napi::Env env = info.Env();
  int64_t device = ArgInt(info, index, "index");
  int count = 0;
  CheckCuda(env, cudaGetDeviceCount(&count), "cudaGetDeviceCount");
  if (device < 0 || device >= count) {
    ThrowRangeError(env, "index: expected a device 0.." + std::to_string(count - 1) + ", got " + std::to_string(device));
  }
  return static_cast<int>(device);
}

Napi::Value DeviceProperties(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int device = ArgDevice(info, 0);
  cudaDeviceProp prop{};
  CheckCuda(env, cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  int memoryClockKHz = 0, busWidthBits = 0;
  CheckCuda(env, cudaDeviceGetAttribute(&memoryClockKHz, cudaDevAttrMemoryClockRate, device), "cudaDeviceGetAttribute");
  CheckCuda(env, cudaDeviceGetAttribute(&busWidthBits, cudaDevAttrGlobalMemoryBusWidth, device),
            "cudaDeviceGetAttribute");
  char pciBusId[32] = {0};
  if (cudaDeviceGetPCIBusId(pciBusId, sizeof(pciBusId), device) != cudaSuccess) cudaGetLastError();
  Napi::Object out = Napi::Object::New(env);
  out.Set("name", prop.name);
  out.Set("major", prop.major);
  out.Set("minor", prop.minor);
  out.Set("multiProcessorCount", prop.multiProcessorCount);
  out.Set("l2CacheSize", prop.l2CacheSize);
  out.Set("totalGlobalMem", static_cast<double>(prop.totalGlobalMem));
  out.Set("sharedMemPerBlockOptin", static_cast<double>(prop.sharedMemPerBlockOptin));
  out.Set("sharedMemPerMultiprocessor", static_cast<double>(prop.sharedMemPerMultiprocessor));
  out.Set("memoryClockKHz", memoryClockKHz);
  out.Set("memoryBusWidthBits", busWidthBits);
  out.Set("pciBusId", pciBusId);
  return out;
}

Napi::Value MemoryInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t freeBytes = 0, totalBytes = 0;
  CheckCuda(env, cudaMemGetInfo(&freeBytes, &totalBytes), "cudaMemGetInfo");
  Napi::Object out = Napi::Object::New(env);
  out.Set("freeBytes", static_cast<double>(freeBytes));
  out.Set("totalBytes", static_cast<double>(totalBytes));
  return out;
}

Napi::Value Synchronize(const Napi::CallbackInfo& info) {
  if (ActiveCapture() != nullptr) {
    ThrowTypeError(info.Env(), "synchronize: not allowed inside captureGraph (nothing runs until the graph is launched)");
  }
  CheckCuda(info.Env(), cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  return info.Env().Undefined();
}

Napi::Value GetDevice(const Napi::CallbackInfo& info) {
  int device = 0;
  CheckCuda(info.Env(), cudaGetDevice(&device), "cudaGetDevice");
  return Napi::Number::New(info.Env(), device);
}

Napi::Value SetDevice(const Napi::CallbackInfo& info) {
  int device = ArgDevice(info, 0);
  CheckCuda(info.Env(), cudaSetDevice(device), "cudaSetDevice");
  return info.Env().Undefined();
}

// setErrorClass(CudaError): the TS class that CUDA failures are thrown as.
Napi::Value SetErrorClass(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsFunction()) ThrowTypeError(env, "errorClass: expected a constructor");
  State(env).cudaErrorClass = Napi::Persistent(info[0].As<Napi::Function>());
  return env.Undefined();
}

void FinalizeState(Napi::Env, AddonState* state) {
  for (auto& entry : state->defaultStreamWorkspaces) {
    if (entry.second.ptr != nullptr) {
      cudaSetDevice(entry.first);
      cudaFree(entry.second.ptr);
    }
  }
  for (auto& entry : state->graphReplays) {
    cudaSetDevice(entry.first);
    cudaEventDestroy(entry.second);
  }
  DestroyCublasHandles(*state);
  cudaGetLastError();
  delete state;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  AddonState* state = new AddonState();
  env.SetInstanceData<AddonState, FinalizeState>(state);
  Napi::Function buffer = DeviceBuffer::Define(env);
  Napi::Function stream = StreamObject::Define(env);
  Napi::Function event = EventObject::Define(env);
  exports.Set("DeviceBuffer", buffer);
  exports.Set("Stream", stream);
  exports.Set("Event", event);
  exports.Set("probe", Napi::Function::New(env, Probe, "probe"));
  exports.Set("deviceProperties", Napi::Function::New(env, DeviceProperties, "deviceProperties"));
  exports.Set("memoryInfo", Napi::Function::New(env, MemoryInfo, "memoryInfo"));
  exports.Set("synchronize", Napi::Function::New(env, Synchronize, "synchronize"));
  exports.Set("getDevice", Napi::Function::New(env, GetDevice, "getDevice"));
  exports.Set("setDevice", Napi::Function::New(env, SetDevice, "setDevice"));
  exports.Set("setErrorClass", Napi::Function::New(env, SetErrorClass, "setErrorClass"));
  RegisterMemoryFunctions(env, exports);
  RegisterCublasFunctions(env, exports);
  RegisterTrirunFunctions(env, exports);
  RegisterOpsFunctions(env, exports);
  RegisterGraphFunctions(env, exports);
  return exports;
}

}  // namespace

}  // namespace trirun

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return trirun::Init(env, exports); }

NODE_API_MODULE(trirun_native, InitAddon)

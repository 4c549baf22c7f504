// Node-API binding of the TriRun kernel (src/kernel/trirun.h): bounds and
// alignment checks on the real pointers (the TypeScript layer validates shapes
// and names arguments first), the managed workspace, and error mapping.
#include <string>

#include "objects.h"
#include "trirun.h"

namespace trirun {

namespace {

struct KernelOperand {
  DeviceBuffer* buffer;
  void* ptr;
};

KernelOperand ArgKernelOperand(const Napi::CallbackInfo& info, size_t index, const char* name, uint64_t bytes) {
  Napi::Env env = info.Env();
  DeviceBuffer* buffer = ArgBuffer(info, index, name);
  int64_t offset = ArgInt(info, index + 1, name);
  if (offset < 0) ThrowRangeError(env, std::string(name) + ": negative byte offset");
  CheckRange(env, buffer, static_cast<uint64_t>(offset), bytes, name);
  void* ptr = static_cast<char*>(buffer->ptr()) + offset;
  if (reinterpret_cast<uintptr_t>(ptr) % 16 != 0) {
    ThrowRangeError(env, std::string(name) + ": the data must be 16-byte aligned (byte offset " +
                             std::to_string(offset) + ")");
  }
  return KernelOperand{buffer, ptr};
}

int ArgKnob(const Napi::CallbackInfo& info, size_t index, const char* name) {
  int64_t value = ArgInt(info, index, name);
  if (value < -1 || value > 1 << 20) ThrowRangeError(info.Env(), std::string(name) + ": out of range");
  return static_cast<int>(value);
}

Napi::Object ConfigObject(Napi::Env env, const TrirunConfig& config, size_t workspaceBytes) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("threadK", config.thread_k);
  out.Set("threadN", config.thread_n);
  out.Set("mBlocks", config.m_blocks);
  out.Set("variant", config.variant);
  out.Set("stages", config.stages);
  out.Set("sms", config.sms);
  out.Set("maxParallel", config.max_par);
  out.Set("threads", config.threads);
  out.Set("workspaceBytes", static_cast<double>(workspaceBytes));
  return out;
}

// trirunMatmul(A, aOff, B, bOff, s, sOff, C, cOff, m, n, k, groupsize, stream,
//              threadK, threadN, sms, maxParallel) -> config
Napi::Value TrirunMatmul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t m = ArgInt(info, 8, "m");
  int64_t n = ArgInt(info, 9, "n");
  int64_t k = ArgInt(info, 10, "k");
  int64_t groupsize = ArgInt(info, 11, "groupsize");
  if (m < 1 || n < 1 || k < 1 || m > 2147483647 || n > 2147483647 || k > 2147483647) {
    ThrowRangeError(env, "m, n, k: expected 1..2^31-1");
  }
  if (k % 16 != 0) ThrowRangeError(env, "k: expected a multiple of 128, got " + std::to_string(k));
  int64_t groups = groupsize == -1 ? 1 : (groupsize > 0 && k % groupsize == 0 ? k / groupsize : -1);
  if (groups < 1) ThrowRangeError(env, "groupsize: expected 128 or k (-1), got " + std::to_string(groupsize));
  KernelOperand a = ArgKernelOperand(info, 0, "A", uint64_t(m) * k * 2);
  KernelOperand b = ArgKernelOperand(info, 2, "B", uint64_t(k / 16) * n * 4);
  KernelOperand s = ArgKernelOperand(info, 4, "s", uint64_t(groups) * n * 2);
  KernelOperand c = ArgKernelOperand(info, 6, "C", uint64_t(m) * n * 2);
  int device = a.buffer->device();
  for (auto [operand, name] : {std::pair{b, "B"}, std::pair{s, "s"}, std::pair{c, "C"}}) {
    if (operand.buffer->device() != device) {
      ThrowRangeError(env, std::string(name) + ": on device " + std::to_string(operand.buffer->device()) +
                               ", A on device " + std::to_string(device));
    }
  }
  StreamObject* object = nullptr;
  cudaStream_t stream = ArgStream(info, 12, device, &object);
  TrirunConfig config{};
  config.thread_k = ArgKnob(info, 13, "threadK");
  config.thread_n = ArgKnob(info, 14, "threadN");
  config.sms = ArgKnob(info, 15, "sms");
  config.max_par = ArgKnob(info, 16, "maxParallel");

  UseDevice(env, device);
  size_t workspaceBytes = trirun_workspace_bytes(static_cast<int>(n), config.max_par);
  Workspace& workspace = AcquireWorkspace(env, device, stream, object, workspaceBytes);
  cudaError_t cudaErr = cudaSuccess;
  int code = trirun_matmul(a.ptr, b.ptr, s.ptr, c.ptr, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k),
                           static_cast<int>(groupsize), workspace.ptr, workspace.bytes, device, stream, &config,
                           &cudaErr);
  if (code == TRIRUN_OK) return ConfigObject(env, config, workspace.bytes);
  // A failed call may have left partial sums or locks behind: re-zero before reuse.
  workspace.dirty = true;
  const char* text = trirun_error_string(code);
  std::string message = std::string("trirunMatmul: ") + (text != nullptr ? text : "unknown error") + " (m=" +
                        std::to_string(m) + ", n=" + std::to_string(n) + ", k=" + std::to_string(k) +
                        ", groupsize=" + std::to_string(groupsize) + ")";
  switch (code) {
    case TRIRUN_ERR_CUDA:
      cudaGetLastError();
      ThrowCudaError(env, cudaGetErrorName(cudaErr), message + ": " + cudaGetErrorString(cudaErr));
    case TRIRUN_ERR_SHAPE:
    case TRIRUN_ERR_GROUPSIZE:
    case TRIRUN_ERR_CONFIG:
    case TRIRUN_ERR_ALIGNMENT:
      ThrowRangeError(env, message);
    default: {
      Napi::Error error = Napi::Error::New(env, message);
      error.Set("code", Napi::String::New(env, "ERR_TRIRUN_" + std::to_string(code)));
      throw error;
    }
  }
}

// workspaceBytes(n, maxParallel): what trirun_workspace_bytes reports.
Napi::Value WorkspaceBytes(const Napi::CallbackInfo& info) {
  int64_t n = ArgInt(info, 0, "n");
  int64_t maxPar = ArgInt(info, 1, "maxParallel");
  return Napi::Number::New(info.Env(),
                           static_cast<double>(trirun_workspace_bytes(static_cast<int>(n), static_cast<int>(maxPar))));
}

}  // namespace

void RegisterTrirunFunctions(Napi::Env env, Napi::Object exports) {
  exports.Set("trirunMatmul", Napi::Function::New(env, TrirunMatmul, "trirunMatmul"));
  exports.Set("workspaceBytes", Napi::Function::New(env, WorkspaceBytes, "workspaceBytes"));
}

}  // namespace trirun

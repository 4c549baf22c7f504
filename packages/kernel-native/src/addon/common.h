// Shared helpers of the Node-API glue: per-environment state, CUDA error
// checking that turns failures into JS exceptions (CudaError), argument
// readers. Every CUDA call in the addon goes through CheckCuda.
#pragma once

#include <cuda_runtime.h>
#include <napi.h>

#include <cstdint>
#include <initializer_list>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace trirun {

// Workspace for the kernel's global reduction: an int32 buffer that must be
// zero before each launch (the kernel leaves it zeroed when it succeeds).
struct Workspace {
  void* ptr = nullptr;
  size_t bytes = 0;
  int device = -1;
  bool dirty = false;  // a launch failed; zero it again before the next use
};

// Per-environment (per worker) state, stored as Node-API instance data.
struct AddonState {
  Napi::FunctionReference cudaErrorClass;          // CudaError from the TS side
  Napi::FunctionReference graphClass;
  std::map<int, Workspace> defaultStreamWorkspaces;  // per device
  // Per device, the last replay of a graph on a stream object: graphs use the default stream's
  // workspace they were captured with, so replays on streams that do not order with each other are
  // chained by it (the legacy default stream orders with all of them by itself).
  std::map<int, cudaEvent_t> graphReplays;
  std::map<int, void*> cublasHandles;                // per device
};

AddonState& State(Napi::Env env);

// A graph capture in progress on this thread (captureGraph). While it is active,
// every launch that names no stream goes to the capture stream instead of the
// legacy default stream, and the buffers and workspaces the launches use are
// recorded so that the graph can keep them alive and refuse to replay once one
// of them has been disposed or reallocated.
struct CaptureState {
  int device = 0;
  cudaStream_t stream = nullptr;
  std::vector<Napi::ObjectReference> buffers;  // JS DeviceBuffer objects used by captured launches
  std::set<const void*> seen;                  // their native objects, to record each once
  std::vector<std::pair<const Workspace*, void*>> workspaces;  // workspace and the pointer captured
  std::vector<std::pair<int, void*>> deferredFrees;            // cudaFree is not allowed while capturing
};

// The capture active on this thread, or nullptr.
CaptureState* ActiveCapture();
void SetActiveCapture(CaptureState* capture);

// Throws a CudaError (or a plain Error with `code` when the class is not
// registered) carrying `code` (e.g. "cudaErrorMemoryAllocation") and message.
[[noreturn]] void ThrowCudaError(Napi::Env env, const std::string& code, const std::string& message);

// Checks a CUDA runtime result; on failure clears the (non-sticky) last error
// and throws a CudaError naming `what`.
inline void CheckCuda(Napi::Env env, cudaError_t err, const char* what) {
  if (err == cudaSuccess) return;
  cudaGetLastError();
  ThrowCudaError(env, cudaGetErrorName(err), std::string(what) + ": " + cudaGetErrorString(err));
}

[[noreturn]] void ThrowTypeError(Napi::Env env, const std::string& message);
[[noreturn]] void ThrowRangeError(Napi::Env env, const std::string& message);

// Argument readers that throw TypeError/RangeError naming the argument.
int64_t ArgInt(const Napi::CallbackInfo& info, size_t index, const char* name);
double ArgNumber(const Napi::CallbackInfo& info, size_t index, const char* name);
bool ArgBool(const Napi::CallbackInfo& info, size_t index, const char* name);

// The bytes of `element`-byte values, as many as the product of `dims` (each >= 0): a product that
// does not fit 64 bits is a RangeError naming `name` (wrapped around, it would pass the range checks
// of a small buffer and let a kernel write past it).
uint64_t ByteSize(Napi::Env env, const char* name, std::initializer_list<int64_t> dims, uint64_t element);

// Makes `device` current (cudaSetDevice only when it differs).
void UseDevice(Napi::Env env, int device);

}  // namespace trirun

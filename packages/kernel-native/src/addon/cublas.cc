// cuBLAS, opened with dlopen at run time so that building needs no cuBLAS
// headers or libraries. Only the few entry points and enum values used here
// are declared (values as in the public cublas_api.h / library_types.h).
#include <dlfcn.h>

#include <mutex>
#include <string>
#include <vector>

#include "objects.h"

namespace trirun {

namespace {

using cublasHandle_t = void*;
using cublasStatus_t = int;
constexpr int CUBLAS_STATUS_SUCCESS = 0;
constexpr int CUBLAS_OP_N = 0;
constexpr int CUBLAS_OP_T = 1;
constexpr int CUDA_R_16F = 2;
constexpr int CUDA_R_32F = 0;
constexpr int CUBLAS_COMPUTE_32F = 68;
constexpr int CUBLAS_GEMM_DEFAULT = -1;
constexpr int CUBLAS_DEFAULT_MATH = 0;

using CreateFn = cublasStatus_t (*)(cublasHandle_t*);
using DestroyFn = cublasStatus_t (*)(cublasHandle_t);
using SetStreamFn = cublasStatus_t (*)(cublasHandle_t, cudaStream_t);
using SetMathModeFn = cublasStatus_t (*)(cublasHandle_t, int);
using GemmExFn = cublasStatus_t (*)(cublasHandle_t, int, int, int, int, int, const void*, const void*, int, int,
                                    const void*, int, int, const void*, void*, int, int, int, int);
using SgemmFn = cublasStatus_t (*)(cublasHandle_t, int, int, int, int, int, const float*, const float*, int,
                                   const float*, int, const float*, float*, int);
using StatusStringFn = const char* (*)(cublasStatus_t);

struct CublasLibrary {
  void* handle = nullptr;
  std::string path;
  std::string error;  // why it could not be opened
  CreateFn create = nullptr;
  DestroyFn destroy = nullptr;
  SetStreamFn setStream = nullptr;
  SetMathModeFn setMathMode = nullptr;
  GemmExFn gemmEx = nullptr;
  SgemmFn sgemm = nullptr;
  StatusStringFn statusString = nullptr;
};

std::once_flag cublasOnce;
CublasLibrary cublas;

void OpenCublas() {
  std::vector<std::string> candidates;
  if (const char* override = std::getenv("TRIRUN_CUBLAS_PATH")) candidates.emplace_back(override);
  for (const char* name : {"libcublas.so.13", "libcublas.so.12", "libcublas.so"}) candidates.emplace_back(name);
  // Toolkit installs that are not in the loader's search path.
  std::vector<std::string> roots;
  if (const char* home = std::getenv("CUDA_HOME")) roots.emplace_back(home);
  if (const char* path = std::getenv("CUDA_PATH")) roots.emplace_back(path);
  roots.emplace_back("/usr/local/cuda");
  for (const std::string& root : roots) {
    for (const char* name : {"libcublas.so.13", "libcublas.so.12", "libcublas.so"}) {
      candidates.push_back(root + "/lib64/" + name);
    }
  }
  std::string tried;
  for (const std::string& candidate : candidates) {
    size_t slash = candidate.rfind('/');
    std::string base = slash == std::string::npos ? candidate : candidate.substr(slash + 1);
    if (slash != std::string::npos && base.rfind("libcublas.so", 0) == 0) {
      // libcublas needs libcublasLt by soname; a directory outside the loader's
      // search path would not provide it, so load the sibling first.
      std::string lt = candidate.substr(0, slash + 1) + "libcublasLt" + base.substr(9);
      if (dlopen(lt.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) dlerror();
    }
    void* handle = dlopen(candidate.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      const char* err = dlerror();
      tried += "\n  " + candidate + ": " + (err != nullptr ? err : "not found");
      continue;
    }
    CublasLibrary lib;
    lib.handle = handle;
    lib.path = candidate;
    lib.create = reinterpret_cast<CreateFn>(dlsym(handle, "cublasCreate_v2"));
    lib.destroy = reinterpret_cast<DestroyFn>(dlsym(handle, "cublasDestroy_v2"));
    lib.setStream = reinterpret_cast<SetStreamFn>(dlsym(handle, "cublasSetStream_v2"));
    lib.setMathMode = reinterpret_cast<SetMathModeFn>(dlsym(handle, "cublasSetMathMode"));
    lib.gemmEx = reinterpret_cast<GemmExFn>(dlsym(handle, "cublasGemmEx"));
    lib.sgemm = reinterpret_cast<SgemmFn>(dlsym(handle, "cublasSgemm_v2"));
    lib.statusString = reinterpret_cast<StatusStringFn>(dlsym(handle, "cublasGetStatusString"));
    if (lib.create == nullptr || lib.destroy == nullptr || lib.setStream == nullptr || lib.gemmEx == nullptr ||
        lib.sgemm == nullptr || lib.setMathMode == nullptr) {
      tried += "\n  " + candidate + ": opened, but a required cuBLAS function is missing";
      dlclose(handle);
      continue;
    }
    cublas = lib;
    return;
  }
  cublas.error = "cuBLAS could not be opened (needed by gemmF16/gemmF32; install the CUDA toolkit's cuBLAS, "
                 "add its directory to LD_LIBRARY_PATH or set TRIRUN_CUBLAS_PATH). Tried:" +
                 tried;
}

const CublasLibrary& Cublas(Napi::Env env) {
  std::call_once(cublasOnce, OpenCublas);
  if (cublas.handle == nullptr) {
    Napi::Error error = Napi::Error::New(env, cublas.error);
    error.Set("code", Napi::String::New(env, "ERR_CUBLAS_UNAVAILABLE"));
    throw error;
  }
  return cublas;
}

std::string StatusName(cublasStatus_t status) {
  switch (status) {
    case 1: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case 3: return "CUBLAS_STATUS_ALLOC_FAILED";
    case 7: return "CUBLAS_STATUS_INVALID_VALUE";
    case 8: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case 11: return "CUBLAS_STATUS_MAPPING_ERROR";
    case 13: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case 14: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case 15: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case 16: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "CUBLAS_STATUS_" + std::to_string(status);
  }
}

void CheckCublas(Napi::Env env, cublasStatus_t status, const char* what) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  std::string detail = cublas.statusString != nullptr ? cublas.statusString(status) : StatusName(status);
  // A failed launch may leave a CUDA error behind; report it too.
  cudaError_t cudaErr = cudaGetLastError();
  std::string message = std::string(what) + " failed: " + detail;
  if (cudaErr != cudaSuccess) message += std::string(" (") + cudaGetErrorName(cudaErr) + ": " + cudaGetErrorString(cudaErr) + ")";
  ThrowCudaError(env, StatusName(status), message);
}

cublasHandle_t HandleFor(Napi::Env env, int device, cudaStream_t stream) {
  const CublasLibrary& lib = Cublas(env);
  AddonState& state = State(env);
  UseDevice(env, device);
  auto found = state.cublasHandles.find(device);
  cublasHandle_t handle;
  if (found == state.cublasHandles.end()) {
    CheckCublas(env, lib.create(&handle), "cublasCreate");
    state.cublasHandles[device] = handle;
    CheckCublas(env, lib.setMathMode(handle, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
  } else {
    handle = found->second;
  }
  CheckCublas(env, lib.setStream(handle, stream), "cublasSetStream");
  return handle;
}

int ArgDim(const Napi::CallbackInfo& info, size_t index, const char* name) {
  int64_t value = ArgInt(info, index, name);
  if (value < 1 || value > 2147483647) {
    ThrowRangeError(info.Env(), std::string(name) + ": expected 1..2^31-1, got " + std::to_string(value));
  }
  return static_cast<int>(value);
}

struct Operand {
  DeviceBuffer* buffer;
  uint64_t offset;
  void* ptr;
};

Operand ArgOperand(const Napi::CallbackInfo& info, size_t index, const char* name, uint64_t bytes) {
  DeviceBuffer* buffer = ArgBuffer(info, index, name);
  int64_t offset = ArgInt(info, index + 1, name);
  if (offset < 0) ThrowRangeError(info.Env(), std::string(name) + ": negative byte offset");
  CheckRange(info.Env(), buffer, static_cast<uint64_t>(offset), bytes, name);
  return Operand{buffer, static_cast<uint64_t>(offset), static_cast<char*>(buffer->ptr()) + offset};
}

void CheckSameDevice(Napi::Env env, const Operand& a, const Operand& b, const char* nameB) {
  if (a.buffer->device() != b.buffer->device()) {
    ThrowRangeError(env, std::string(nameB) + ": on device " + std::to_string(b.buffer->device()) +
                             ", expected device " + std::to_string(a.buffer->device()));
  }
}

// gemmF16(A, aOff, W, wOff, C, cOff, m, n, k, transposeW, outputF32, stream?)
// Row-major C(m,n) = A(m,k) W(k,n) is, column-major, C^T = W^T A^T.
Napi::Value GemmF16(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int m = ArgDim(info, 6, "m");
  int n = ArgDim(info, 7, "n");
  int k = ArgDim(info, 8, "k");
  bool transposeW = ArgBool(info, 9, "transposeW");
  bool outputF32 = ArgBool(info, 10, "outputF32");
  Operand a = ArgOperand(info, 0, "A", uint64_t(m) * k * 2);
  Operand w = ArgOperand(info, 2, "W", uint64_t(k) * n * 2);
  Operand c = ArgOperand(info, 4, "C", uint64_t(m) * n * (outputF32 ? 4 : 2));
  CheckSameDevice(env, a, w, "W");
  CheckSameDevice(env, a, c, "C");
  int device = a.buffer->device();
  StreamObject* object = nullptr;
  cudaStream_t stream = ArgStream(info, 11, device, &object);
  cublasHandle_t handle = HandleFor(env, device, stream);
  const float alpha = 1.0f, beta = 0.0f;
  // W row-major (k,n) is column-major (n x k) with ld n; transposed input
  // (n,k) row-major is column-major (k x n) with ld k, used with OP_T.
  int opW = transposeW ? CUBLAS_OP_T : CUBLAS_OP_N;
  int ldw = transposeW ? k : n;
  CheckCublas(env,
              cublas.gemmEx(handle, opW, CUBLAS_OP_N, n, m, k, &alpha, w.ptr, CUDA_R_16F, ldw, a.ptr, CUDA_R_16F, k,
                            &beta, c.ptr, outputF32 ? CUDA_R_32F : CUDA_R_16F, n, CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT),
              "cublasGemmEx");
  return env.Undefined();
}

// gemmF32(A, aOff, B, bOff, C, cOff, m, n, k, transposeA, transposeB, alpha, beta, stream?)
// Row-major C(m,n) = alpha op(A)(m,k) op(B)(k,n) + beta C.
Napi::Value GemmF32(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int m = ArgDim(info, 6, "m");
  int n = ArgDim(info, 7, "n");
  int k = ArgDim(info, 8, "k");
  bool transposeA = ArgBool(info, 9, "transposeA");
  bool transposeB = ArgBool(info, 10, "transposeB");
  float alpha = static_cast<float>(ArgNumber(info, 11, "alpha"));
  float beta = static_cast<float>(ArgNumber(info, 12, "beta"));
  Operand a = ArgOperand(info, 0, "A", uint64_t(m) * k * 4);
  Operand b = ArgOperand(info, 2, "B", uint64_t(k) * n * 4);
  Operand c = ArgOperand(info, 4, "C", uint64_t(m) * n * 4);
  CheckSameDevice(env, a, b, "B");
  CheckSameDevice(env, a, c, "C");
  int device = a.buffer->device();
  StreamObject* object = nullptr;
  cudaStream_t stream = ArgStream(info, 13, device, &object);
  cublasHandle_t handle = HandleFor(env, device, stream);
  // Column-major: C^T (n x m) = op(B)^T op(A)^T. A row-major matrix stored
  // (r,c) is the column-major (c x r) matrix with ld c.
  int opB = transposeB ? CUBLAS_OP_T : CUBLAS_OP_N;
  int ldb = transposeB ? k : n;
  int opA = transposeA ? CUBLAS_OP_T : CUBLAS_OP_N;
  int lda = transposeA ? m : k;
  CheckCublas(env,
              cublas.sgemm(handle, opB, opA, n, m, k, &alpha, static_cast<const float*>(b.ptr), ldb,
                           static_cast<const float*>(a.ptr), lda, &beta, static_cast<float*>(c.ptr), n),
              "cublasSgemm");
  return env.Undefined();
}

// cublasInfo(): { path } once opened, or throws why not.
Napi::Value CublasInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CublasLibrary& lib = Cublas(env);
  Napi::Object out = Napi::Object::New(env);
  out.Set("path", Napi::String::New(env, lib.path));
  return out;
}

}  // namespace

void DestroyCublasHandles(AddonState& state) {
  if (cublas.handle == nullptr) return;
  for (auto& entry : state.cublasHandles) {
    cudaSetDevice(entry.first);
    cublas.destroy(entry.second);
  }
  state.cublasHandles.clear();
}

void RegisterCublasFunctions(Napi::Env env, Napi::Object exports) {
  exports.Set("gemmF16", Napi::Function::New(env, GemmF16, "gemmF16"));
  exports.Set("gemmF32", Napi::Function::New(env, GemmF32, "gemmF32"));
  exports.Set("cublasInfo", Napi::Function::New(env, CublasInfo, "cublasInfo"));
}

}  // namespace trirun

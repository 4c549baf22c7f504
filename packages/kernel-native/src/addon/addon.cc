#include <napi.h>
#include <cuda_runtime.h>
static Napi::Value Available(const Napi::CallbackInfo& info) {
  int n = 0; cudaError_t e = cudaGetDeviceCount(&n);
  return Napi::Boolean::New(info.Env(), e == cudaSuccess && n > 0);
}
static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("available", Napi::Function::New(env, Available));
  return exports;
}
NODE_API_MODULE(trirun_native, Init)

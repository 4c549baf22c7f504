#include "common.h"

#include <cmath>

namespace trirun {

AddonState& State(Napi::Env env) { return *env.GetInstanceData<AddonState>(); }

void ThrowCudaError(Napi::Env env, const std::string& code, const std::string& message) {
  AddonState& state = State(env);
  if (!state.cudaErrorClass.IsEmpty()) {
    Napi::Object error = state.cudaErrorClass.New({Napi::String::New(env, message), Napi::String::New(env, code)});
    throw Napi::Error(env, error);
  }
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  throw error;
}

void ThrowTypeError(Napi::Env env, const std::string& message) { throw Napi::TypeError::New(env, message); }

void ThrowRangeError(Napi::Env env, const std::string& message) { throw Napi::RangeError::New(env, message); }

double ArgNumber(const Napi::CallbackInfo& info, size_t index, const char* name) {
  if (index >= info.Length() || !info[index].IsNumber()) {
    ThrowTypeError(info.Env(), std::string(name) + ": expected a number");
  }
  return info[index].As<Napi::Number>().DoubleValue();
}

int64_t ArgInt(const Napi::CallbackInfo& info, size_t index, const char* name) {
  double value = ArgNumber(info, index, name);
  // 2^53: the largest range in which doubles hold every integer.
  if (!std::isfinite(value) || std::floor(value) != value || std::fabs(value) > 9007199254740992.0) {
    ThrowRangeError(info.Env(), std::string(name) + ": expected an integer, got " + std::to_string(value));
  }
  return static_cast<int64_t>(value);
}

bool ArgBool(const Napi::CallbackInfo& info, size_t index, const char* name) {
  if (index >= info.Length() || !info[index].IsBoolean()) {
    ThrowTypeError(info.Env(), std::string(name) + ": expected a boolean");
  }
  return info[index].As<Napi::Boolean>().Value();
}

void UseDevice(Napi::Env env, int device) {
  int current = -1;
  CheckCuda(env, cudaGetDevice(&current), "cudaGetDevice");
  if (current != device) CheckCuda(env, cudaSetDevice(device), "cudaSetDevice");
}

uint64_t ByteSize(Napi::Env env, const char* name, std::initializer_list<int64_t> dims, uint64_t element) {
  uint64_t bytes = element;
  for (int64_t d : dims) {
    if (d < 0 || __builtin_mul_overflow(bytes, static_cast<uint64_t>(d), &bytes)) {
      ThrowRangeError(env, std::string(name) + ": the size in bytes of these dimensions does not fit 64 bits");
    }
  }
  return bytes;
}

}  // namespace trirun

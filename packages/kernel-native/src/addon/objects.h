// JS-visible native objects: device memory, streams and events.
#pragma once

#include "common.h"

namespace trirun {

// One cudaMalloc allocation. Freed by free() or, as a safety net, by the
// destructor when the JS object is garbage collected.
class DeviceBuffer : public Napi::ObjectWrap<DeviceBuffer> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit DeviceBuffer(const Napi::CallbackInfo& info);
  ~DeviceBuffer() override;

  void* ptr() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  int device() const { return device_; }
  bool freed() const { return freed_; }

 private:
  Napi::Value Free(const Napi::CallbackInfo& info);
  Napi::Value GetByteLength(const Napi::CallbackInfo& info);
  Napi::Value GetDevice(const Napi::CallbackInfo& info);
  Napi::Value GetFreed(const Napi::CallbackInfo& info);
  Napi::Value GetAddress(const Napi::CallbackInfo& info);
  void Release();

  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  int device_ = 0;
  bool freed_ = false;
};

// A blocking CUDA stream (it synchronises with the legacy default stream) that
// owns the kernel workspace used by launches on it.
class StreamObject : public Napi::ObjectWrap<StreamObject> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit StreamObject(const Napi::CallbackInfo& info);
  ~StreamObject() override;

  cudaStream_t stream() const { return stream_; }
  int device() const { return device_; }
  bool destroyed() const { return destroyed_; }
  Workspace& workspace() { return workspace_; }

 private:
  Napi::Value Synchronize(const Napi::CallbackInfo& info);
  Napi::Value Query(const Napi::CallbackInfo& info);
  Napi::Value Destroy(const Napi::CallbackInfo& info);
  Napi::Value GetDestroyed(const Napi::CallbackInfo& info);
  Napi::Value GetDevice(const Napi::CallbackInfo& info);
  void Release();

  cudaStream_t stream_ = nullptr;
  int device_ = 0;
  bool destroyed_ = false;
  Workspace workspace_;
};

class EventObject : public Napi::ObjectWrap<EventObject> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit EventObject(const Napi::CallbackInfo& info);
  ~EventObject() override;

 private:
  Napi::Value Record(const Napi::CallbackInfo& info);
  Napi::Value Synchronize(const Napi::CallbackInfo& info);
  Napi::Value Query(const Napi::CallbackInfo& info);
  Napi::Value ElapsedMs(const Napi::CallbackInfo& info);
  Napi::Value Destroy(const Napi::CallbackInfo& info);
  Napi::Value GetDestroyed(const Napi::CallbackInfo& info);
  void Release();
  void CheckAlive(Napi::Env env) const;

  cudaEvent_t event_ = nullptr;
  int device_ = 0;
  bool destroyed_ = false;
  bool recorded_ = false;
};

// Argument helpers: a live DeviceBuffer, and a stream (null/undefined = the
// legacy default stream of `device`). The stream must live on `device`.
DeviceBuffer* ArgBuffer(const Napi::CallbackInfo& info, size_t index, const char* name);
cudaStream_t ArgStream(const Napi::CallbackInfo& info, size_t index, int device, StreamObject** object);

// Checks that [offset, offset + bytes) lies inside the buffer.
void CheckRange(Napi::Env env, const DeviceBuffer* buffer, uint64_t offset, uint64_t bytes, const char* name);

// Zeroed kernel workspace of at least `bytes` for (device, stream), grown on demand.
Workspace& AcquireWorkspace(Napi::Env env, int device, cudaStream_t stream, StreamObject* object, size_t bytes);

void RegisterMemoryFunctions(Napi::Env env, Napi::Object exports);

}  // namespace trirun

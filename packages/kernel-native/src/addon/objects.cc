#include "objects.h"

#include <sstream>

namespace trirun {

namespace {

// Node-API type tags: InstanceOf follows the prototype chain, which script can rewrite
// (Object.setPrototypeOf), and Unwrap trusts whatever it is given; a tag set at construction
// proves which native class an object wraps before it is unwrapped.
constexpr napi_type_tag kBufferTag = {0x74726972756e4275ULL, 0x6666657200000001ULL};
constexpr napi_type_tag kStreamTag = {0x74726972756e5374ULL, 0x7265616d00000001ULL};
constexpr napi_type_tag kEventTag = {0x74726972756e4576ULL, 0x656e740000000001ULL};

bool Tagged(const Napi::Value& value, const napi_type_tag& tag) {
  return value.IsObject() && value.As<Napi::Object>().CheckTypeTag(&tag);
}

}  // namespace

namespace {

std::string FormatBytes(size_t bytes) {
  std::ostringstream out;
  out << bytes << " bytes (" << (static_cast<double>(bytes) / (1024.0 * 1024.0)) << " MiB)";
  return out.str();
}

}  // namespace

// ---------------------------------------------------------------- DeviceBuffer

Napi::Function DeviceBuffer::Define(Napi::Env env) {
  return DefineClass(env, "DeviceBuffer",
                     {
                         InstanceMethod<&DeviceBuffer::Free>("free"),
                         InstanceAccessor<&DeviceBuffer::GetByteLength>("byteLength"),
                         InstanceAccessor<&DeviceBuffer::GetDevice>("device"),
                         InstanceAccessor<&DeviceBuffer::GetFreed>("freed"),
                         InstanceAccessor<&DeviceBuffer::GetAddress>("address"),
                     });
}

DeviceBuffer::DeviceBuffer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DeviceBuffer>(info) {
  Napi::Env env = info.Env();
  info.This().As<Napi::Object>().TypeTag(&kBufferTag);
  int64_t bytes = ArgInt(info, 0, "byteLength");
  if (bytes < 0) ThrowRangeError(env, "byteLength: expected a non-negative size, got " + std::to_string(bytes));
  CheckCuda(env, cudaGetDevice(&device_), "cudaGetDevice");
  bytes_ = static_cast<size_t>(bytes);
  if (bytes_ == 0) return;  // an empty tensor owns no memory
  cudaError_t err = cudaMalloc(&ptr_, bytes_);
  if (err != cudaSuccess) {
    cudaGetLastError();
    ptr_ = nullptr;
    size_t freeBytes = 0, totalBytes = 0;
    std::string memory;
    if (cudaMemGetInfo(&freeBytes, &totalBytes) == cudaSuccess) {
      memory = " (" + FormatBytes(freeBytes) + " free of " + FormatBytes(totalBytes) + ")";
    }
    cudaGetLastError();
    ThrowCudaError(env, cudaGetErrorName(err),
                   "cudaMalloc of " + FormatBytes(bytes_) + " on device " + std::to_string(device_) +
                       " failed: " + cudaGetErrorString(err) + memory);
  }
}

DeviceBuffer::~DeviceBuffer() { Release(); }

void DeviceBuffer::Release() {
  if (freed_) return;
  freed_ = true;
  if (ptr_ != nullptr) {
    // cudaFree waits for work that may still use the memory. Errors cannot be
    // reported from a finalizer (and at exit the runtime may be gone): ignore.
    if (CaptureState* capture = ActiveCapture()) {
      // A finalizer that runs while a graph is being captured: freeing now would
      // invalidate the capture, so the capture frees it when it ends.
      capture->deferredFrees.emplace_back(device_, ptr_);
      ptr_ = nullptr;
      return;
    }
    int previous = -1;
    cudaGetDevice(&previous);
    if (previous != device_) cudaSetDevice(device_);
    cudaFree(ptr_);
    if (previous != device_ && previous >= 0) cudaSetDevice(previous);
    cudaGetLastError();
    ptr_ = nullptr;
  }
}

Napi::Value DeviceBuffer::Free(const Napi::CallbackInfo& info) {
  Release();
  return info.Env().Undefined();
}

Napi::Value DeviceBuffer::GetByteLength(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(bytes_));
}

Napi::Value DeviceBuffer::GetDevice(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), device_); }

Napi::Value DeviceBuffer::GetFreed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), freed_); }

Napi::Value DeviceBuffer::GetAddress(const Napi::CallbackInfo& info) {
  return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(ptr_)));
}

// ---------------------------------------------------------------- Stream

Napi::Function StreamObject::Define(Napi::Env env) {
  return DefineClass(env, "NativeStream",
                     {
                         InstanceMethod<&StreamObject::Synchronize>("synchronize"),
                         InstanceMethod<&StreamObject::Query>("query"),
                         InstanceMethod<&StreamObject::Destroy>("destroy"),
                         InstanceAccessor<&StreamObject::GetDestroyed>("destroyed"),
                         InstanceAccessor<&StreamObject::GetDevice>("device"),
                     });
}

StreamObject::StreamObject(const Napi::CallbackInfo& info) : Napi::ObjectWrap<StreamObject>(info) {
  Napi::Env env = info.Env();
  info.This().As<Napi::Object>().TypeTag(&kStreamTag);
  CheckCuda(env, cudaGetDevice(&device_), "cudaGetDevice");
  CheckCuda(env, cudaStreamCreate(&stream_), "cudaStreamCreate");
  workspace_.device = device_;
}

StreamObject::~StreamObject() { Release(); }

void StreamObject::Release() {
  if (destroyed_) return;
  destroyed_ = true;
  int previous = -1;
  cudaGetDevice(&previous);
  if (previous != device_) cudaSetDevice(device_);
  if (workspace_.ptr != nullptr) cudaFree(workspace_.ptr);  // waits for the stream's work
  workspace_ = Workspace{};
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
  stream_ = nullptr;
  if (previous != device_ && previous >= 0) cudaSetDevice(previous);
  cudaGetLastError();
}

Napi::Value StreamObject::Synchronize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (destroyed_) throw Napi::Error::New(env, "stream: the stream has been disposed");
  CheckCuda(env, cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  return env.Undefined();
}

Napi::Value StreamObject::Query(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (destroyed_) throw Napi::Error::New(env, "stream: the stream has been disposed");
  cudaError_t err = cudaStreamQuery(stream_);
  if (err == cudaErrorNotReady) {
    cudaGetLastError();
    return Napi::Boolean::New(env, false);
  }
  CheckCuda(env, err, "cudaStreamQuery");
  return Napi::Boolean::New(env, true);
}

Napi::Value StreamObject::Destroy(const Napi::CallbackInfo& info) {
  Release();
  return info.Env().Undefined();
}

Napi::Value StreamObject::GetDestroyed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), destroyed_);
}

Napi::Value StreamObject::GetDevice(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), device_); }

// ---------------------------------------------------------------- Event

Napi::Function EventObject::Define(Napi::Env env) {
  return DefineClass(env, "NativeEvent",
                     {
                         InstanceMethod<&EventObject::Record>("record"),
                         InstanceMethod<&EventObject::Synchronize>("synchronize"),
                         InstanceMethod<&EventObject::Query>("query"),
                         InstanceMethod<&EventObject::ElapsedMs>("elapsedMs"),
                         InstanceMethod<&EventObject::Destroy>("destroy"),
                         InstanceAccessor<&EventObject::GetDestroyed>("destroyed"),
                     });
}

EventObject::EventObject(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EventObject>(info) {
  Napi::Env env = info.Env();
  info.This().As<Napi::Object>().TypeTag(&kEventTag);
  CheckCuda(env, cudaGetDevice(&device_), "cudaGetDevice");
  CheckCuda(env, cudaEventCreate(&event_), "cudaEventCreate");
}

EventObject::~EventObject() { Release(); }

void EventObject::Release() {
  if (destroyed_) return;
  destroyed_ = true;
  if (event_ != nullptr) cudaEventDestroy(event_);
  event_ = nullptr;
  cudaGetLastError();
}

void EventObject::CheckAlive(Napi::Env env) const {
  if (destroyed_) throw Napi::Error::New(env, "event: the event has been disposed");
}

Napi::Value EventObject::Record(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckAlive(env);
  StreamObject* object = nullptr;
  cudaStream_t stream = ArgStream(info, 0, device_, &object);
  UseDevice(env, device_);
  CheckCuda(env, cudaEventRecord(event_, stream), "cudaEventRecord");
  recorded_ = true;
  return env.Undefined();
}

Napi::Value EventObject::Synchronize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckAlive(env);
  CheckCuda(env, cudaEventSynchronize(event_), "cudaEventSynchronize");
  return env.Undefined();
}

Napi::Value EventObject::Query(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckAlive(env);
  cudaError_t err = cudaEventQuery(event_);
  if (err == cudaErrorNotReady) {
    cudaGetLastError();
    return Napi::Boolean::New(env, false);
  }
  CheckCuda(env, err, "cudaEventQuery");
  return Napi::Boolean::New(env, true);
}

Napi::Value EventObject::ElapsedMs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckAlive(env);
  if (info.Length() < 1 || !Tagged(info[0], kEventTag)) ThrowTypeError(env, "start: expected an Event");
  EventObject* start = EventObject::Unwrap(info[0].As<Napi::Object>());
  start->CheckAlive(env);
  if (!start->recorded_ || !recorded_) {
    throw Napi::Error::New(env, "elapsedMs: both events must have been recorded");
  }
  float ms = 0.0f;
  CheckCuda(env, cudaEventElapsedTime(&ms, start->event_, event_), "cudaEventElapsedTime");
  return Napi::Number::New(env, ms);
}

Napi::Value EventObject::Destroy(const Napi::CallbackInfo& info) {
  Release();
  return info.Env().Undefined();
}

Napi::Value EventObject::GetDestroyed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), destroyed_);
}

// ---------------------------------------------------------------- helpers

DeviceBuffer* ArgBuffer(const Napi::CallbackInfo& info, size_t index, const char* name) {
  Napi::Env env = info.Env();
  if (index >= info.Length() || !Tagged(info[index], kBufferTag)) {
    ThrowTypeError(env, std::string(name) + ": expected a device buffer");
  }
  DeviceBuffer* buffer = DeviceBuffer::Unwrap(info[index].As<Napi::Object>());
  if (buffer->freed()) throw Napi::Error::New(env, std::string(name) + ": the tensor's memory has been disposed");
  if (CaptureState* capture = ActiveCapture()) {
    if (capture->seen.insert(buffer).second) capture->buffers.push_back(Napi::Persistent(info[index].As<Napi::Object>()));
  }
  return buffer;
}

cudaStream_t ArgStream(const Napi::CallbackInfo& info, size_t index, int device, StreamObject** object) {
  Napi::Env env = info.Env();
  *object = nullptr;
  bool none = index >= info.Length() || info[index].IsNull() || info[index].IsUndefined();
  if (CaptureState* capture = ActiveCapture()) {
    if (!none) ThrowTypeError(env, "stream: inside captureGraph launches take no stream (they go to the capture stream)");
    if (device != capture->device) {
      ThrowRangeError(env, "captureGraph: the graph is captured on device " + std::to_string(capture->device) +
                               ", the tensors are on device " + std::to_string(device));
    }
    return capture->stream;
  }
  if (none) return nullptr;
  if (!Tagged(info[index], kStreamTag)) ThrowTypeError(env, "stream: expected a Stream");
  StreamObject* stream = StreamObject::Unwrap(info[index].As<Napi::Object>());
  if (stream->destroyed()) throw Napi::Error::New(env, "stream: the stream has been disposed");
  if (stream->device() != device) {
    ThrowRangeError(env, "stream: the stream belongs to device " + std::to_string(stream->device()) +
                             ", the tensors to device " + std::to_string(device));
  }
  *object = stream;
  return stream->stream();
}

void CheckRange(Napi::Env env, const DeviceBuffer* buffer, uint64_t offset, uint64_t bytes, const char* name) {
  if (offset > buffer->bytes() || bytes > buffer->bytes() - offset) {
    ThrowRangeError(env, std::string(name) + ": bytes [" + std::to_string(offset) + ", " +
                             std::to_string(offset + bytes) + ") lie outside the buffer of " +
                             std::to_string(buffer->bytes()) + " bytes");
  }
}

Workspace& AcquireWorkspace(Napi::Env env, int device, cudaStream_t stream, StreamObject* object, size_t bytes) {
  Workspace& workspace = object != nullptr ? object->workspace() : State(env).defaultStreamWorkspaces[device];
  workspace.device = device;
  if (CaptureState* capture = ActiveCapture()) {
    // Nothing runs during a capture: growing or zeroing the workspace now would
    // either synchronise (not allowed) or be recorded in the graph.
    if (workspace.bytes < bytes || workspace.dirty) {
      ThrowCudaError(env, "ERR_GRAPH_WARMUP",
                     "captureGraph: the kernel workspace (" + FormatBytes(bytes) +
                         ") is not ready; run the same calls once outside captureGraph before capturing them");
    }
    capture->workspaces.emplace_back(&workspace, workspace.ptr);
    return workspace;
  }
  if (workspace.bytes < bytes) {
    if (workspace.ptr != nullptr) {
      CheckCuda(env, cudaFree(workspace.ptr), "cudaFree (workspace)");  // waits for launches using it
      workspace = Workspace{};
      workspace.device = device;
    }
    void* ptr = nullptr;
    cudaError_t err = cudaMalloc(&ptr, bytes);
    if (err != cudaSuccess) {
      cudaGetLastError();
      ThrowCudaError(env, cudaGetErrorName(err),
                     "cudaMalloc of the " + FormatBytes(bytes) + " kernel workspace failed: " + cudaGetErrorString(err));
    }
    workspace.ptr = ptr;
    workspace.bytes = bytes;
    workspace.dirty = true;
  }
  if (workspace.dirty) {
    CheckCuda(env, cudaMemsetAsync(workspace.ptr, 0, workspace.bytes, stream), "cudaMemsetAsync (workspace)");
    workspace.dirty = false;
  }
  return workspace;
}

// ---------------------------------------------------------------- copies

namespace {

struct HostView {
  void* data;
  size_t bytes;
};

HostView ArgTypedArray(const Napi::CallbackInfo& info, size_t index, const char* name) {
  Napi::Env env = info.Env();
  if (index >= info.Length() || !info[index].IsTypedArray()) ThrowTypeError(env, std::string(name) + ": expected a typed array");
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  napi_value arrayBuffer;
  size_t byteOffset = 0;
  napi_status status = napi_get_typedarray_info(env, info[index], &type, &length, &data, &arrayBuffer, &byteOffset);
  if (status != napi_ok) ThrowTypeError(env, std::string(name) + ": cannot read the typed array");
  Napi::TypedArray array = info[index].As<Napi::TypedArray>();
  return HostView{data, array.ByteLength()};
}

// copyHostToDevice(buffer, byteOffset, typedArray, stream?)
Napi::Value CopyHostToDevice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DeviceBuffer* buffer = ArgBuffer(info, 0, "tensor");
  int64_t offset = ArgInt(info, 1, "byteOffset");
  HostView host = ArgTypedArray(info, 2, "data");
  if (offset < 0) ThrowRangeError(env, "byteOffset: expected a non-negative offset");
  CheckRange(env, buffer, offset, host.bytes, "data");
  if (ActiveCapture() != nullptr) {
    ThrowTypeError(env, "upload: host-to-device copies cannot be captured in a graph; upload before launching it");
  }
  StreamObject* object = nullptr;
  cudaStream_t stream = ArgStream(info, 3, buffer->device(), &object);
  if (host.bytes == 0) return env.Undefined();
  UseDevice(env, buffer->device());
  char* dst = static_cast<char*>(buffer->ptr()) + offset;
  // From pageable memory the copy returns once the host data is staged, so the
  // caller may reuse `data` right away.
  CheckCuda(env, cudaMemcpyAsync(dst, host.data, host.bytes, cudaMemcpyHostToDevice, stream),
            "cudaMemcpyAsync (host to device)");
  return env.Undefined();
}

// copyDeviceToHost(buffer, byteOffset, typedArray, stream?): synchronises the stream.
Napi::Value CopyDeviceToHost(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DeviceBuffer* buffer = ArgBuffer(info, 0, "tensor");
  int64_t offset = ArgInt(info, 1, "byteOffset");
  HostView host = ArgTypedArray(info, 2, "out");
  if (offset < 0) ThrowRangeError(env, "byteOffset: expected a non-negative offset");
  CheckRange(env, buffer, offset, host.bytes, "out");
  if (ActiveCapture() != nullptr) {
    ThrowTypeError(env, "download: device-to-host copies cannot be captured in a graph; download after launching it");
  }
  StreamObject* object = nullptr;
  cudaStream_t stream = ArgStream(info, 3, buffer->device(), &object);
  if (host.bytes == 0) return env.Undefined();
  UseDevice(env, buffer->device());
  const char* src = static_cast<const char*>(buffer->ptr()) + offset;
  CheckCuda(env, cudaMemcpyAsync(host.data, src, host.bytes, cudaMemcpyDeviceToHost, stream),
            "cudaMemcpyAsync (device to host)");
  CheckCuda(env, cudaStreamSynchronize(stream), "cudaStreamSynchronize (device to host)");
  return env.Undefined();
}

// copyDeviceToDevice(dst, dstOffset, src, srcOffset, bytes, stream?)
Napi::Value CopyDeviceToDevice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DeviceBuffer* dst = ArgBuffer(info, 0, "destination");
  int64_t dstOffset = ArgInt(info, 1, "dstByteOffset");
  DeviceBuffer* src = ArgBuffer(info, 2, "source");
  int64_t srcOffset = ArgInt(info, 3, "srcByteOffset");
  int64_t bytes = ArgInt(info, 4, "byteLength");
  if (dstOffset < 0 || srcOffset < 0 || bytes < 0) ThrowRangeError(env, "copy: offsets and sizes must be non-negative");
  CheckRange(env, dst, dstOffset, bytes, "destination");
  CheckRange(env, src, srcOffset, bytes, "source");
  if (dst->device() != src->device()) {
    ThrowRangeError(env, "source: on device " + std::to_string(src->device()) + ", destination on device " +
                             std::to_string(dst->device()));
  }
  StreamObject* object = nullptr;
  cudaStream_t stream = ArgStream(info, 5, dst->device(), &object);
  if (bytes == 0) return env.Undefined();
  UseDevice(env, dst->device());
  CheckCuda(env,
            cudaMemcpyAsync(static_cast<char*>(dst->ptr()) + dstOffset, static_cast<const char*>(src->ptr()) + srcOffset,
                            bytes, cudaMemcpyDeviceToDevice, stream),
            "cudaMemcpyAsync (device to device)");
  return env.Undefined();
}

// copy2D(dst, dstOffset, dstPitch, src, srcOffset, srcPitch, widthBytes, rows, stream?):
// `rows` rows of `widthBytes` each, rows `pitch` bytes apart (cudaMemcpy2DAsync).
Napi::Value Copy2D(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DeviceBuffer* dst = ArgBuffer(info, 0, "destination");
  int64_t dstOffset = ArgInt(info, 1, "dstByteOffset");
  int64_t dstPitch = ArgInt(info, 2, "dstPitch");
  DeviceBuffer* src = ArgBuffer(info, 3, "source");
  int64_t srcOffset = ArgInt(info, 4, "srcByteOffset");
  int64_t srcPitch = ArgInt(info, 5, "srcPitch");
  int64_t width = ArgInt(info, 6, "widthBytes");
  int64_t rows = ArgInt(info, 7, "rows");
  if (dstOffset < 0 || srcOffset < 0 || width < 0 || rows < 0 || dstPitch < width || srcPitch < width) {
    ThrowRangeError(env, "copy2D: offsets, sizes must be non-negative and pitches at least the row width");
  }
  if (rows == 0 || width == 0) return env.Undefined();
  // (rows - 1) pitches plus one row, checked: a size that wrapped around would pass a small buffer.
  auto span = [&](const char* name, int64_t pitch) {
    uint64_t bytes = 0;
    if (__builtin_add_overflow(ByteSize(env, name, {rows - 1, pitch}, 1), uint64_t(width), &bytes)) {
      ThrowRangeError(env, std::string(name) + ": the size in bytes of these rows does not fit 64 bits");
    }
    return bytes;
  };
  CheckRange(env, dst, dstOffset, span("destination", dstPitch), "destination");
  CheckRange(env, src, srcOffset, span("source", srcPitch), "source");
  if (dst->device() != src->device()) {
    ThrowRangeError(env, "source: on device " + std::to_string(src->device()) + ", destination on device " +
                             std::to_string(dst->device()));
  }
  StreamObject* object = nullptr;
  cudaStream_t stream = ArgStream(info, 8, dst->device(), &object);
  UseDevice(env, dst->device());
  CheckCuda(env,
            cudaMemcpy2DAsync(static_cast<char*>(dst->ptr()) + dstOffset, dstPitch,
                              static_cast<const char*>(src->ptr()) + srcOffset, srcPitch, width, rows,
                              cudaMemcpyDeviceToDevice, stream),
            "cudaMemcpy2DAsync");
  return env.Undefined();
}

// memset(buffer, byteOffset, byteValue, bytes, stream?)
Napi::Value Memset(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DeviceBuffer* buffer = ArgBuffer(info, 0, "tensor");
  int64_t offset = ArgInt(info, 1, "byteOffset");
  int64_t value = ArgInt(info, 2, "value");
  int64_t bytes = ArgInt(info, 3, "byteLength");
  if (offset < 0 || bytes < 0) ThrowRangeError(env, "fill: offsets and sizes must be non-negative");
  if (value < 0 || value > 255) ThrowRangeError(env, "value: expected a byte 0..255, got " + std::to_string(value));
  CheckRange(env, buffer, offset, bytes, "tensor");
  StreamObject* object = nullptr;
  cudaStream_t stream = ArgStream(info, 4, buffer->device(), &object);
  if (bytes == 0) return env.Undefined();
  UseDevice(env, buffer->device());
  CheckCuda(env, cudaMemsetAsync(static_cast<char*>(buffer->ptr()) + offset, static_cast<int>(value), bytes, stream),
            "cudaMemsetAsync");
  return env.Undefined();
}

}  // namespace

void RegisterMemoryFunctions(Napi::Env env, Napi::Object exports) {
  exports.Set("copyHostToDevice", Napi::Function::New(env, CopyHostToDevice, "copyHostToDevice"));
  exports.Set("copyDeviceToHost", Napi::Function::New(env, CopyDeviceToHost, "copyDeviceToHost"));
  exports.Set("copyDeviceToDevice", Napi::Function::New(env, CopyDeviceToDevice, "copyDeviceToDevice"));
  exports.Set("memset", Napi::Function::New(env, Memset, "memset"));
  exports.Set("copy2D", Napi::Function::New(env, Copy2D, "copy2D"));
}

}  // namespace trirun

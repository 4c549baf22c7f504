// CUDA graphs: captureGraph(device, callback) records every launch the callback
// makes (kernels, cuBLAS, device copies) into one graph that replays with a
// single cudaGraphLaunch. Decoding a token issues hundreds of small launches;
// from JavaScript each costs tens of microseconds of host time, which a graph
// replaces by one call.
//
// Safety: nothing runs during a capture, so
// - launches are redirected to a private non-blocking capture stream (the
//   legacy default stream cannot be captured), and an explicit stream is an
//   error;
// - host copies, synchronisation and workspace growth are refused with clear
//   errors (they would invalidate the capture or be silently left out);
// - the graph keeps a reference to every buffer its launches use, so the
//   garbage collector cannot free memory it reads, and launch() refuses to run
//   when one was disposed explicitly or the kernel workspace was reallocated.
#include <string>

#include "objects.h"

namespace trirun {

namespace {

thread_local CaptureState* activeCapture = nullptr;

}  // namespace

CaptureState* ActiveCapture() { return activeCapture; }
void SetActiveCapture(CaptureState* capture) { activeCapture = capture; }

namespace {

// One capture stream per device, created on first use and kept (streams are cheap).
cudaStream_t CaptureStreamFor(Napi::Env env, int device) {
  static thread_local std::map<int, cudaStream_t> streams;
  auto found = streams.find(device);
  if (found != streams.end()) return found->second;
  cudaStream_t stream = nullptr;
  CheckCuda(env, cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags (capture)");
  streams[device] = stream;
  return stream;
}

void FreeDeferred(CaptureState& capture) {
  for (auto& [device, ptr] : capture.deferredFrees) {
    cudaSetDevice(device);
    cudaFree(ptr);
  }
  capture.deferredFrees.clear();
  cudaSetDevice(capture.device);
  cudaGetLastError();
}

class GraphObject : public Napi::ObjectWrap<GraphObject> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "CudaGraph",
                       {
                           InstanceMethod<&GraphObject::Launch>("launch"),
                           InstanceMethod<&GraphObject::Destroy>("destroy"),
                           InstanceAccessor<&GraphObject::GetDestroyed>("destroyed"),
                           InstanceAccessor<&GraphObject::GetNodes>("nodes"),
                           InstanceAccessor<&GraphObject::GetDevice>("device"),
                       });
  }

  explicit GraphObject(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GraphObject>(info) {}
  ~GraphObject() override { Release(); }

  void Discard() { Release(); }

  // Takes ownership of a captured graph and what its launches used.
  void Adopt(Napi::Env env, cudaGraph_t graph, CaptureState& capture) {
    graph_ = graph;
    device_ = capture.device;
    buffers_ = std::move(capture.buffers);
    workspaces_ = std::move(capture.workspaces);
    CheckCuda(env, cudaGraphGetNodes(graph_, nullptr, &nodes_), "cudaGraphGetNodes");
    CheckCuda(env, cudaGraphInstantiate(&exec_, graph_, 0), "cudaGraphInstantiate");
  }

 private:
  // launch(stream?): replays the graph (default: the legacy default stream, so it
  // orders with uploads and other calls that name no stream).
  Napi::Value Launch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (exec_ == nullptr) throw Napi::Error::New(env, "graph: the graph has been disposed");
    if (ActiveCapture() != nullptr) ThrowTypeError(env, "graph: cannot launch a graph inside captureGraph");
    for (const Napi::ObjectReference& ref : buffers_) {
      if (DeviceBuffer::Unwrap(ref.Value())->freed()) {
        throw Napi::Error::New(env, "graph: a device tensor used by the graph has been disposed; capture it again");
      }
    }
    for (auto& [workspace, ptr] : workspaces_) {
      if (workspace->ptr != ptr || workspace->dirty) {
        throw Napi::Error::New(env,
                               "graph: the kernel workspace it was captured with has been reallocated or needs "
                               "zeroing (a larger or failed call since); capture it again");
      }
    }
    StreamObject* object = nullptr;
    cudaStream_t stream = ArgStream(info, 0, device_, &object);
    UseDevice(env, device_);
    // The graph's kernels use the default stream's workspace they were captured with (locks and
    // partial sums that must start at zero). Stream objects are blocking streams: they order with
    // the legacy default stream (so a replay there needs nothing), but not with each other, so two
    // replays on two of them (of one graph or of two) could use it at once. A replay on a stream
    // object waits for the previous one on a stream object, whichever it was.
    if (workspaces_.empty() || stream == nullptr) {
      CheckCuda(env, cudaGraphLaunch(exec_, stream), "cudaGraphLaunch");
      return env.Undefined();
    }
    cudaEvent_t& last = State(env).graphReplays[device_];
    if (last == nullptr) {
      CheckCuda(env, cudaEventCreateWithFlags(&last, cudaEventDisableTiming), "cudaEventCreateWithFlags (replays)");
    }
    CheckCuda(env, cudaStreamWaitEvent(stream, last, 0), "cudaStreamWaitEvent (the previous replay)");
    CheckCuda(env, cudaGraphLaunch(exec_, stream), "cudaGraphLaunch");
    CheckCuda(env, cudaEventRecord(last, stream), "cudaEventRecord (replays)");
    return env.Undefined();
  }

  Napi::Value Destroy(const Napi::CallbackInfo& info) {
    Release();
    return info.Env().Undefined();
  }

  Napi::Value GetDestroyed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), exec_ == nullptr); }
  Napi::Value GetNodes(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(nodes_)); }
  Napi::Value GetDevice(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), device_); }

  void Release() {
    // Destroying an executable graph waits for nothing; launches already queued
    // keep their own reference in the driver.
    if (exec_ != nullptr) cudaGraphExecDestroy(exec_);
    if (graph_ != nullptr) cudaGraphDestroy(graph_);
    exec_ = nullptr;
    graph_ = nullptr;
    for (Napi::ObjectReference& ref : buffers_) ref.Reset();
    buffers_.clear();
    workspaces_.clear();
    cudaGetLastError();
  }

  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
  int device_ = 0;
  size_t nodes_ = 0;
  std::vector<Napi::ObjectReference> buffers_;
  std::vector<std::pair<const Workspace*, void*>> workspaces_;
};

// captureGraph(device, callback): a CudaGraph of what callback() launched.
Napi::Value CaptureGraph(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t device = ArgInt(info, 0, "device");
  if (info.Length() < 2 || !info[1].IsFunction()) ThrowTypeError(env, "callback: expected a function");
  if (ActiveCapture() != nullptr) ThrowTypeError(env, "captureGraph: a capture is already in progress (no nesting)");
  int count = 0;
  CheckCuda(env, cudaGetDeviceCount(&count), "cudaGetDeviceCount");
  if (device < 0 || device >= count) {
    ThrowRangeError(env, "device: expected 0.." + std::to_string(count - 1) + ", got " + std::to_string(device));
  }
  UseDevice(env, int(device));
  CaptureState capture;
  capture.device = int(device);
  capture.stream = CaptureStreamFor(env, int(device));
  // Thread-local mode: a forbidden call from this thread (cudaMalloc, a
  // synchronous copy...) fails and invalidates the capture instead of running.
  CheckCuda(env, cudaStreamBeginCapture(capture.stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
  SetActiveCapture(&capture);
  cudaGraph_t graph = nullptr;
  try {
    info[1].As<Napi::Function>().Call(env.Undefined(), {});
  } catch (...) {
    SetActiveCapture(nullptr);
    cudaStreamEndCapture(capture.stream, &graph);
    if (graph != nullptr) cudaGraphDestroy(graph);
    FreeDeferred(capture);
    throw;
  }
  SetActiveCapture(nullptr);
  cudaError_t err = cudaStreamEndCapture(capture.stream, &graph);
  FreeDeferred(capture);
  if (err != cudaSuccess) {
    if (graph != nullptr) cudaGraphDestroy(graph);
    cudaGetLastError();
    ThrowCudaError(env, cudaGetErrorName(err),
                   std::string("captureGraph: the capture failed (") + cudaGetErrorString(err) +
                       "); a call inside the callback is not allowed in a graph");
  }
  Napi::Object object = State(env).graphClass.New({});
  try {
    GraphObject::Unwrap(object)->Adopt(env, graph, capture);
  } catch (...) {
    // Adopt owns the graph from here: Release() destroys it.
    GraphObject::Unwrap(object)->Discard();
    throw;
  }
  return object;
}

}  // namespace

void RegisterGraphFunctions(Napi::Env env, Napi::Object exports) {
  Napi::Function graph = GraphObject::Define(env);
  State(env).graphClass = Napi::Persistent(graph);
  exports.Set("CudaGraph", graph);
  exports.Set("captureGraph", Napi::Function::New(env, CaptureGraph, "captureGraph"));
}

}  // namespace trirun

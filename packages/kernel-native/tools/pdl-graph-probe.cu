// Does programmatic dependent launch survive stream capture into a CUDA graph on this stack?
// Captures primary -> secondary launched with cudaLaunchAttributeProgrammaticStreamSerialization,
// prints the instantiated graph's edge types, and times (with %globaltimer) whether the secondary
// starts before the primary has finished, in the graph and on a plain stream.
// Build: nvcc -O3 -std=c++17 -arch=sm_90 tools/pdl-graph-probe.cu -o /tmp/pdl && /tmp/pdl
#include <cuda_runtime.h>
#include <cstdio>

#define CK(x)                                                                                  \
  do {                                                                                         \
    cudaError_t e_ = (x);                                                                      \
    if (e_ != cudaSuccess) {                                                                   \
      printf("%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));               \
      return 1;                                                                                \
    }                                                                                          \
  } while (0)

__device__ unsigned long long now() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// Primary: lets dependents launch at once, then spins ~20 us.
__global__ void primary(unsigned long long* t) {
  asm volatile("griddepcontrol.launch_dependents;");
  const unsigned long long t0 = now();
  while (now() - t0 < 20000) {
  }
  if (threadIdx.x == 0 && blockIdx.x == 0) t[1] = now();  // primary end
}

// Secondary: records its start before waiting on the primary, and after.
__global__ void secondary(unsigned long long* t) {
  if (threadIdx.x == 0 && blockIdx.x == 0) t[2] = now();
  asm volatile("griddepcontrol.wait;" ::: "memory");
  if (threadIdx.x == 0 && blockIdx.x == 0) t[3] = now();
}

static cudaError_t launch_pair(cudaStream_t s, unsigned long long* t) {
  primary<<<4, 32, 0, s>>>(t);
  cudaLaunchConfig_t cfg{};
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cfg.gridDim = dim3(4);
  cfg.blockDim = dim3(32);
  cfg.stream = s;
  cfg.attrs = &attr;
  cfg.numAttrs = 1;
  return cudaLaunchKernelEx(&cfg, secondary, t);
}

static void report(const char* what, const unsigned long long* t) {
  const double start_vs_end = (double(t[2]) - double(t[1])) / 1000.0;
  printf("%s: secondary started %.2f us %s the primary ended; passed its wait %.2f us after the primary ended\n",
         what, start_vs_end < 0 ? -start_vs_end : start_vs_end, start_vs_end < 0 ? "before" : "after",
         (double(t[3]) - double(t[1])) / 1000.0);
}

int main() {
  int rt = 0, drv = 0;
  CK(cudaRuntimeGetVersion(&rt));
  CK(cudaDriverGetVersion(&drv));
  printf("runtime %d, driver %d\n", rt, drv);
  unsigned long long* t;
  CK(cudaMalloc(&t, 4 * sizeof(unsigned long long)));
  unsigned long long h[4];
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  // Plain stream.
  for (int i = 0; i < 3; ++i) CK(launch_pair(s, t));
  CK(cudaStreamSynchronize(s));
  CK(cudaMemcpy(h, t, sizeof(h), cudaMemcpyDeviceToHost));
  report("stream", h);
  // Captured graph.
  cudaGraph_t g;
  CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  CK(launch_pair(s, t));
  CK(cudaStreamEndCapture(s, &g));
  size_t n = 0;
  CK(cudaGraphGetEdges(g, nullptr, nullptr, nullptr, &n));
  cudaGraphNode_t from[8], to[8];
  cudaGraphEdgeData data[8];
  CK(cudaGraphGetEdges(g, from, to, data, &n));
  for (size_t i = 0; i < n; ++i)
    printf("edge %zu: type %d (%s), from port %d, to port %d\n", i, int(data[i].type),
           data[i].type == cudaGraphDependencyTypeProgrammatic ? "programmatic" : "default",
           int(data[i].from_port), int(data[i].to_port));
  cudaGraphExec_t ge;
  CK(cudaGraphInstantiate(&ge, g, 0));
  for (int i = 0; i < 3; ++i) CK(cudaGraphLaunch(ge, s));
  CK(cudaStreamSynchronize(s));
  CK(cudaMemcpy(h, t, sizeof(h), cudaMemcpyDeviceToHost));
  report("graph", h);
  return 0;
}

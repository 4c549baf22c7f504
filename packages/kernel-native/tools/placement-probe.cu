// Where the block scheduler puts the blocks of back-to-back programmatic-dependent grids whose blocks fit
// two per SM: per grid, how many SMs got two (or more) of its blocks (NOTES.md, session 33).
// Build and run on the GPU machine: nvcc -O3 -std=c++17 -arch=sm_90 tools/placement-probe.cu -o /tmp/placement
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <cuda_runtime.h>
#include "cuda-check.h"  // CK
template <int MIN_BLOCKS>
__global__ void __launch_bounds__(384, MIN_BLOCKS) spin(int* smids, int grid_index, long long spin_ns, int wait_first) {
  extern __shared__ int4 smem[];
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  unsigned smid;
  asm volatile("mov.u32 %0, %%smid;" : "=r"(smid));
  if (threadIdx.x == 0) smem[0].x = smid;
  if (wait_first) asm volatile("griddepcontrol.wait;" ::: "memory");
  if (threadIdx.x == 0) smids[grid_index * gridDim.x + blockIdx.x] = smid;
  unsigned long long t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do { asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)); } while (t - t0 < (unsigned long long)spin_ns);
  if (!wait_first) asm volatile("griddepcontrol.wait;" ::: "memory");
}
template <int MIN_BLOCKS>
void run(int blocks, int smem, int grids, long long spin_ns, int pdl) {
  auto kernel = spin<MIN_BLOCKS>;
  CK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  int* d; CK(cudaMalloc(&d, sizeof(int) * blocks * grids));
  CK(cudaMemset(d, 0xff, sizeof(int) * blocks * grids));
  cudaStream_t s; CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cudaEvent_t e0, e1; CK(cudaEventCreate(&e0)); CK(cudaEventCreate(&e1));
  CK(cudaEventRecord(e0, s));
  for (int g = 0; g < grids; ++g) {
    cudaLaunchConfig_t c{}; cudaLaunchAttribute a{};
    a.id = cudaLaunchAttributeProgrammaticStreamSerialization; a.val.programmaticStreamSerializationAllowed = 1;
    c.gridDim = dim3(blocks); c.blockDim = dim3(384); c.dynamicSmemBytes = smem; c.stream = s;
    c.attrs = &a; c.numAttrs = pdl ? 1 : 0;
    CK(cudaLaunchKernelEx(&c, kernel, d, g, spin_ns, 1));
  }
  CK(cudaEventRecord(e1, s)); CK(cudaStreamSynchronize(s));
  float ms; CK(cudaEventElapsedTime(&ms, e0, e1));
  std::vector<int> h(blocks * grids); CK(cudaMemcpy(h.data(), d, sizeof(int) * h.size(), cudaMemcpyDeviceToHost));
  int doubled_total = 0, worst = 0;
  for (int g = 0; g < grids; ++g) {
    std::vector<int> per(256, 0);
    for (int b = 0; b < blocks; ++b) per[h[g * blocks + b] & 255]++;
    int doubled = 0;
    for (int x : per) { if (x > 1) ++doubled; if (x > worst) worst = x; }
    doubled_total += doubled;
  }
  printf("blocks/SM bound %d, grid %3d, smem %6d, pdl %d: %d grids of %lld ns spin: %.2f us/grid; SMs holding two of one grid's blocks: %.2f per grid (most on one SM: %d)\n",
         MIN_BLOCKS, blocks, smem, pdl, grids, spin_ns, 1000.0f * ms / grids, double(doubled_total) / grids, worst);
  CK(cudaFree(d));
}
int main() {
  for (int pdl = 0; pdl <= 1; ++pdl)
    for (int blocks : {132, 131, 96, 72}) {
      run<2>(blocks, 100 * 1024, 200, 5000, pdl);
      run<1>(blocks, 200 * 1024, 200, 5000, pdl);
    }
  return 0;
}

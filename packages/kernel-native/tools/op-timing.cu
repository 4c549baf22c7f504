// op-timing: per-launch time of the 8-bit row quantization (ops.cu) on rows
// with and without zeros, beside the RMSNorm of the same row, with CUDA events
// (median of 7 runs of 200 back-to-back launches). Written for session 22's
// finding that the quantizing row kernels ran 1.5-7 us longer than the norms
// (NOTES.md): it isolates the data dependence. Build on the GPU machine:
//   nvcc -O3 -std=c++17 -arch=sm_90a -Isrc/kernel tools/op-timing.cu src/kernel/ops.cu -o /tmp/op-timing
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "cuda-check.h"
#include "ops.h"

template <typename F>
static float per_launch_us(cudaStream_t st, F&& launch) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  const int launches = 200;
  std::vector<float> t;
  for (int r = 0; r < 8; ++r) {
    CK(cudaEventRecord(a, st));
    for (int i = 0; i < launches; ++i) CK(launch());
    CK(cudaEventRecord(b, st));
    CK(cudaEventSynchronize(b));
    float ms;
    CK(cudaEventElapsedTime(&ms, a, b));
    if (r > 0) t.push_back(ms * 1000.0f / launches);
  }
  std::sort(t.begin(), t.end());
  CK(cudaEventDestroy(a));
  CK(cudaEventDestroy(b));
  return t[t.size() / 2];
}

int main() {
  cudaStream_t st;
  CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int dim : {2560, 6912}) {
    __half *x, *out, *w;
    CK(cudaMalloc(&x, dim * 2));
    CK(cudaMalloc(&out, dim * 2));
    CK(cudaMalloc(&w, dim * 2));
    std::vector<__half> ones(dim, __float2half(1.0f));
    CK(cudaMemcpy(w, ones.data(), dim * 2, cudaMemcpyHostToDevice));
    // zero_share: that share of the row's values set to 0 (relu2 zeroes about half of a gate row).
    for (float zero_share : {0.0f, 0.02f, 0.5f}) {
      std::vector<__half> h(dim);
      for (auto& v : h) {
        const float r = normal(rng);
        v = __float2half(std::uniform_real_distribution<float>(0, 1)(rng) < zero_share ? 0.0f : r);
      }
      CK(cudaMemcpy(x, h.data(), dim * 2, cudaMemcpyHostToDevice));
      const float q = per_launch_us(st, [&] { return trirun_op_quantize_rows(x, out, 1, dim, 8, st); });
      const float n = per_launch_us(st, [&] { return trirun_op_rmsnorm(x, w, 0, out, 1, dim, 1e-5f, st); });
      const float nq =
          per_launch_us(st, [&] { return trirun_op_rmsnorm_quantize(x, w, 0, out, 1, dim, 1e-5f, 8, st); });
      printf("dim %5d zeros %4.0f%%: quantizeRows %6.2f us  rmsnorm %6.2f us  rmsnorm+quantize (fused) %6.2f us\n", dim,
             100.0f * zero_share, q, n, nq);
    }
    CK(cudaFree(x));
    CK(cudaFree(out));
    CK(cudaFree(w));
  }
  return 0;
}

// How many accumulator bits an fp8 mma.sync keeps (GPU, sm_89+; kernel-native NOTES.md, session 26). Session
// 26's fp8 path for m <= 16 (removed: on sm_90 ptxas lowers mma.sync .e4m3 to fp16 HMMAs, 2x slower) summed
// e4m3 x e4m3 and e4m3 x e5m2 products in m16n8k32 MMAs with fp32 accumulators, and fp8 MMAs on Ada and Hopper
// are reported to drop low accumulator bits (H100: none dropped). Each test computes D = A B + C in one MMA, where
// C is 1.0 everywhere and A B is one product 2^-e (a single nonzero in A's row and B's column), or 32 products of
// 2^-(e + 5) (the whole k32), and checks whether D is 1 + 2^-e exactly, as an fp32 sum would make it (e <= 23).
// Prints, per test, the exponents that come back exact; an fp32-faithful MMA keeps all of 1..23.
// Build and run (the device): nvcc -O3 -std=c++17 -arch=sm_90a tools/fp8-mma-probe.cu -o /tmp/fp8-mma-probe
#include <cuda_fp8.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "cuda-check.h"  // CK

// One m16n8k32 per launch: A (16 x 32) and B (32 x 8) as bytes, row-major / column-major; D row-major.
template <bool B_E5M2>
__global__ void one_mma(const uint8_t* a, const uint8_t* b, float c, float* d) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  const int lane = threadIdx.x, g = lane / 4, t = lane % 4;
  uint32_t ar[4], br[2];
  for (int r = 0; r < 4; ++r) {  // a0: row g, k 4t..; a1: row g + 8; a2: row g, k 16 + 4t..; a3: row g + 8
    const int row = g + (r % 2) * 8, k0 = 4 * t + (r / 2) * 16;
    std::memcpy(&ar[r], a + row * 32 + k0, 4);
  }
  for (int r = 0; r < 2; ++r) std::memcpy(&br[r], b + g * 32 + 4 * t + 16 * r, 4);  // column g, k 4t.. / 16 + 4t..
  float acc[4] = {c, c, c, c};
  if constexpr (B_E5M2) {
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e5m2.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
        : "r"(ar[0]), "r"(ar[1]), "r"(ar[2]), "r"(ar[3]), "r"(br[0]), "r"(br[1]));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
        : "r"(ar[0]), "r"(ar[1]), "r"(ar[2]), "r"(ar[3]), "r"(br[0]), "r"(br[1]));
  }
  for (int e = 0; e < 4; ++e) d[(g + (e / 2) * 8) * 8 + 2 * t + e % 2] = acc[e];
#else
  (void)a, (void)b, (void)c, (void)d;
#endif
}

uint8_t fp8(float x, __nv_fp8_interpretation_t kind) { return __nv_cvt_float_to_fp8(x, __NV_SATFINITE, kind); }

int main() {
  int device = 0;
  cudaDeviceProp prop{};
  CK(cudaGetDevice(&device));
  CK(cudaGetDeviceProperties(&prop, device));
  if (prop.major * 10 + prop.minor < 89) {
    std::printf("fp8-mma-probe: %s is sm_%d%d; fp8 MMAs need sm_89+\n", prop.name, prop.major, prop.minor);
    return 1;
  }
  uint8_t *da, *db;
  float* dd;
  CK(cudaMalloc(&da, 16 * 32));
  CK(cudaMalloc(&db, 8 * 32));
  CK(cudaMalloc(&dd, 16 * 8 * sizeof(float)));
  std::printf("fp8-mma-probe on %s: D = A B + 1.0, exact 1 + 2^-e expected\n", prop.name);
  int inexact_total = 0;
  for (int test = 0; test < 4; ++test) {
    const bool e5m2 = test % 2 == 1, whole_k = test >= 2;
    const __nv_fp8_interpretation_t b_kind = e5m2 ? __NV_E5M2 : __NV_E4M3;
    char kept[128] = {0}, lost[128] = {0};
    for (int e = 1; e <= 23; ++e) {
      // The product(s): 2^-e as a single a x b, or 32 x 2^-(e + 5). a = 2^-ea in e4m3 (down to 2^-9), b the rest.
      const int total = whole_k ? e + 5 : e;
      const int ea = total / 2 < 9 ? total / 2 : 9;
      const int eb = total - ea;
      if (eb > (e5m2 ? 16 : 9)) continue;  // below the format's smallest subnormal
      uint8_t a[16 * 32] = {}, b[8 * 32] = {};
      for (int row = 0; row < 16; ++row)
        for (int k = 0; k < (whole_k ? 32 : 1); ++k) a[row * 32 + k] = fp8(std::ldexp(1.0f, -ea), __NV_E4M3);
      for (int col = 0; col < 8; ++col)
        for (int k = 0; k < (whole_k ? 32 : 1); ++k) b[col * 32 + k] = fp8(std::ldexp(1.0f, -eb), b_kind);
      CK(cudaMemcpy(da, a, sizeof a, cudaMemcpyHostToDevice));
      CK(cudaMemcpy(db, b, sizeof b, cudaMemcpyHostToDevice));
      if (e5m2)
        one_mma<true><<<1, 32>>>(da, db, 1.0f, dd);
      else
        one_mma<false><<<1, 32>>>(da, db, 1.0f, dd);
      CK(cudaGetLastError());
      float d[16 * 8];
      CK(cudaMemcpy(d, dd, sizeof d, cudaMemcpyDeviceToHost));
      const float want = 1.0f + std::ldexp(1.0f, -e);
      bool exact = true;
      for (float v : d) exact = exact && v == want;
      char* list = exact ? kept : lost;
      std::snprintf(list + std::strlen(list), 128 - std::strlen(list), " %d", e);
      if (!exact) ++inexact_total;
    }
    std::printf("  %s, %s: exact for e =%s; not for e =%s\n", e5m2 ? "e4m3 x e5m2" : "e4m3 x e4m3",
                whole_k ? "32 products" : "one product", kept, lost[0] ? lost : " (none)");
  }
  std::printf("fp8-mma-probe: %d inexact results (0: the MMAs sum in fp32)\n", inexact_total);
  return 0;
}

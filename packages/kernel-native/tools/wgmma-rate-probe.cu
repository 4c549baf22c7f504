// How fast m64n64k16 wgmmas run in the Hopper kernel's pattern, without its memory side (GPU, sm_90a;
// kernel-native NOTES.md, session 34). At m = 64 the kernel's 128 x 128 tile is 16 such wgmmas (8 per
// consumer warpgroup), 512 cycles of tensor work at the H100's 4096 fp16 flops per SM and cycle, yet a tile
// takes ~890 cycles, and ~695 with its decoding left out (-DTRIRUN_EXP_DECODE_ONCE). This times, with clock64
// on one block per SM, back-to-back tiles of 8 wgmmas per warpgroup (the kernel's double-buffered loop:
// fence, 8 wgmmas, commit, wait until one group is left), with
//   - the weights (the A operand) from registers (RS, as the kernel) or from shared memory (SS);
//   - one or two warpgroups;
//   - with or without the kernel's decoding in front of each tile (per k16 step and thread: a shared-memory
//     load, two shifts, four masks, four fp16 fmas into the fragment registers);
//   - and with the two warpgroups taking turns at issuing (ping-pong: named barriers 4 and 5), so that one
//     decodes while the other's wgmmas run.
// Session 35 added schedules of the register-operand decoding: ring (groups of G steps, the words loaded a
// tile ahead), beside (fixed fragments, the decoding into registers no wgmma reads) and interleaved (the next
// tile's decoding between this tile's wgmmas). ptxas injects a warpgroup.arrive (C7519) after every write of
// a wgmma operand register between two wgmmas; only the masks can go there (into temporaries).
// Nothing here reads global memory: the shared operands are whatever shared memory holds (timings only).
// Build and run (the device): nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a tools/wgmma-rate-probe.cu \
//   -o /tmp/wgmma-rate && /tmp/wgmma-rate
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "cuda-check.h"  // CK

// A K-major shared operand in the 128-byte swizzle (as trirun.cu's wgmma_desc_sw128).
__device__ __forceinline__ uint64_t desc_sw128(uint32_t smem_addr) {
  return static_cast<uint64_t>((smem_addr & 0x3ffff) >> 4) | (static_cast<uint64_t>(1) << 16) |
         (static_cast<uint64_t>(1024 >> 4) << 32) | (static_cast<uint64_t>(1) << 62);
}

#define D32                                                                                                   \
  "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), \
      "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),  \
      "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), \
      "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
#define R32                                                                                                  \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, " \
  "%23, %24, %25, %26, %27, %28, %29, %30, %31}"

__device__ __forceinline__ void mma_rs(float (&d)[32], const uint32_t (&a)[4], uint64_t b) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\nwgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 " R32
               ", {%32, %33, %34, %35}, %36, p, 1, 1, 0;\n}\n"
               : D32
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1));
}
__device__ __forceinline__ void mma_ss(float (&d)[32], uint64_t a, uint64_t b) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\nwgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 " R32
               ", %32, %33, p, 1, 1, 0, 0;\n}\n"
               : D32
               : "l"(a), "l"(b), "r"(1));
}
__device__ __forceinline__ void fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int n>
__device__ __forceinline__ void wait_group() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(n) : "memory");
}
// wgmma reads and writes its registers asynchronously: as in trirun.cu, empty statements that keep the
// compiler from reusing or moving them (without keep_acc ptxas serialises the decoding variant's wgmmas).
__device__ __forceinline__ void keep_acc(float (&d)[32]) {
#pragma unroll
  for (int e = 0; e < 32; ++e) asm volatile("" : "+f"(d[e])::"memory");
}
__device__ __forceinline__ void keep(uint32_t (&f)[8][4]) {
#pragma unroll
  for (int s = 0; s < 8; ++s) asm volatile("" ::"r"(f[s][0]), "r"(f[s][1]), "r"(f[s][2]), "r"(f[s][3]) : "memory");
}

// Step ks's B descriptor: the kernel's step_desc at 64 rows (atom ks / 4, 32 bytes further per step in it).
__device__ __forceinline__ uint64_t step_desc(uint64_t desc, int ks) {
  return desc + static_cast<uint64_t>(((ks / 4) * 64 * 128 + (ks % 4) * 32) >> 4);
}
// The kernel's subnormal decoding of one k16 step, in two halves: a packed word's codes masked into four
// registers (a warp's codes at bits 2 (warp % 2) + {0, 4, 8, 12}), and one fp16 fma per register.
__device__ __forceinline__ void code_masks(uint32_t w, int warp, uint32_t (&m)[4]) {
  const uint32_t x = w << (4 - 2 * (warp % 2)), y = w >> (4 + 2 * (warp % 2));
  m[0] = x & 0x00300030u;
  m[1] = y & 0x00300030u;
  m[2] = x & 0x03000300u;
  m[3] = y & 0x03000300u;
}
__device__ __forceinline__ uint32_t scale_code(uint32_t m, __half2 unit, __half2 minus) {
  __half2 h = __hfma2(*reinterpret_cast<const __half2*>(&m), unit, minus);
  return *reinterpret_cast<uint32_t*>(&h);
}
__device__ __forceinline__ void decode_word(uint32_t w, int warp, __half2 unit, __half2 minus, uint32_t (&dst)[4]) {
  uint32_t m[4];
  code_masks(w, warp, m);
#pragma unroll
  for (int r = 0; r < 4; ++r) dst[r] = scale_code(m[r], unit, minus);
}

// MODE 0: RS, fragments fixed; 1: RS, each tile's fragments decoded as the kernel does; 2: SS; 3: as 1, the
// warpgroups taking turns at issuing; 4: SS with the decoding done (into registers, unused) as well; 5: SS
// whose A is what the decoding stores to shared memory (a double buffer per warpgroup: 8 16-byte stores per
// thread and tile, a proxy fence and a warpgroup barrier before the wgmmas), a decode-to-shared design.
template <int MODE, int THREADS = 384>
__global__ void __launch_bounds__(THREADS, 1) rate(int tiles, int warpgroups, long long* cycles, float* sink) {
  extern __shared__ __align__(1024) unsigned char smem[];
  const int wg = threadIdx.x / 128;
  if (wg >= warpgroups) return;
  const uint32_t base = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  const uint32_t b_addr = (base + 1023) & ~1023u;  // B: 64 rows x 128 k (two 64-wide swizzle atoms)
  const uint32_t a_addr = b_addr + 16384;  // A (SS): two buffers of 64 columns x 128 k per warpgroup
  const uint32_t* words = reinterpret_cast<const uint32_t*>(smem + (a_addr - base) + 65536);
  const int warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32;
  float d[32];
#pragma unroll
  for (int e = 0; e < 32; ++e) d[e] = 0.0f;
  uint32_t fa[8][4], fb[8][4];
#pragma unroll
  for (int s = 0; s < 8; ++s)
#pragma unroll
    for (int r = 0; r < 4; ++r) fa[s][r] = fb[s][r] = 0x3c003c00u ^ (threadIdx.x * 16 + s * 4 + r);
  const uint64_t b0 = desc_sw128(b_addr), a0 = desc_sw128(a_addr + wg * 32768);
  constexpr bool kSS = MODE == 2 || MODE == 4 || MODE == 5, kDecode = MODE == 1 || MODE >= 3;
  // MODE 5: tile t's fragments to buffer t % 2 of the warpgroup, made visible to the wgmmas (async proxy).
  auto store_a = [&](uint32_t (&f)[8][4], int t) {
    if constexpr (MODE == 5) {
      const uint32_t buf = a_addr + wg * 32768 + (t % 2) * 16384 + (threadIdx.x % 128) * 16;
#pragma unroll
      for (int ks = 0; ks < 8; ++ks)
        asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(buf + ks * 2048), "r"(f[ks][0]),
                     "r"(f[ks][1]), "r"(f[ks][2]), "r"(f[ks][3])
                     : "memory");
      asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
      asm volatile("bar.sync %0, 128;\n" ::"r"(2 + wg) : "memory");
    }
  };
  const __half2 unit = __float2half2_rn(1048576.0f * 0.01f), minus = __float2half2_rn(-0.01f);
  auto decode = [&](uint32_t (&f)[8][4], int t) {
#pragma unroll
    for (int ks = 0; ks < 8; ++ks) {
      decode_word(words[(ks * 128 + wg * 64 + lane * 2 + warp / 2 + t) % 4096], warp, unit, minus, f[ks]);
    }
  };
  const bool pingpong = MODE == 3 && warpgroups == 2;
  auto issue = [&](uint32_t (&f)[8][4], int t) {
    if (pingpong) asm volatile("bar.sync %0, 256;\n" ::"r"(4 + wg) : "memory");
    if constexpr (MODE != 5) keep_acc(d);  // (in MODE 5 it made ptxas serialise the wgmmas: C7515)
    fence();
    const uint64_t a_t = MODE == 5 ? a0 + static_cast<uint64_t>(((t % 2) * 16384) >> 4) : a0;
#pragma unroll
    for (int ks = 0; ks < 8; ++ks) {
      if constexpr (kSS)
        mma_ss(d, step_desc(a_t, ks), step_desc(b0, ks));
      else
        mma_rs(d, f[ks], step_desc(b0, ks));
    }
    commit();
    if (pingpong) asm volatile("bar.arrive %0, 256;\n" ::"r"(5 - wg) : "memory");
  };
  asm volatile("bar.sync 1, %0;\n" ::"r"(warpgroups * 128));
  if (pingpong && wg == 1) asm volatile("bar.arrive 4, 256;\n" ::: "memory");
  const long long t0 = clock64();
  for (int t = 0; t < tiles; t += 2) {
    if (kDecode) decode(fa, t);
    store_a(fa, t);
    issue(fa, t);
    if (t > 0) {
      wait_group<1>();
      keep(fb);
    }
    if (kDecode) decode(fb, t + 1);
    store_a(fb, t + 1);
    issue(fb, t + 1);
    wait_group<1>();
    keep(fa);
  }
  wait_group<0>();
  keep_acc(d);
  if (pingpong && wg == 0) asm volatile("bar.sync 4, 256;\n" ::: "memory");
  const long long t1 = clock64();
  if (threadIdx.x % 128 == 0) cycles[blockIdx.x * 4 + wg] = t1 - t0;
  float s = 0.0f;
#pragma unroll
  for (int e = 0; e < 32; ++e) s += d[e];
  if (s == 1234.5f) sink[threadIdx.x] = s;  // keeps the accumulators alive
}

// Ring schedules (modes 6..; kernel-native NOTES.md, session 35): the fragments of RING tiles' k16 steps in a
// ring of registers, issued in groups of G steps (fence, G wgmmas, commit); after each group the warp waits
// until the ring's oldest group is done and decodes the next group into its slot, so the decoding runs while
// up to RING * 8 / G - 1 groups are queued. The decoding's shared-memory words are loaded a tile ahead (into
// a second ring) so that only its arithmetic sits between two groups. The kernel's schedule is G = 8, RING =
// 2 with the words loaded in the decoding (mode 1). BESIDE: fixed fragments, the same decoding into registers
// the wgmmas do not read (does the RS wgmma stall the warp's independent work?).
template <int G, int RING, bool BESIDE>
__global__ void __launch_bounds__(384, 1) ring_rate(int tiles, int warpgroups, long long* cycles, float* sink) {
  extern __shared__ __align__(1024) unsigned char smem[];
  const int wg = threadIdx.x / 128;
  if (wg >= warpgroups) return;
  const uint32_t base = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  const uint32_t b_addr = (base + 1023) & ~1023u;
  const uint32_t* words = reinterpret_cast<const uint32_t*>(smem + (b_addr - base) + 16384 + 65536);
  const int warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32;
  constexpr int kSlots = RING * 8, kGroups = kSlots / G;
  float d[32];
#pragma unroll
  for (int e = 0; e < 32; ++e) d[e] = 0.0f;
  uint32_t f[kSlots][4], beside[kSlots][4], q[8] = {};
#pragma unroll
  for (int s = 0; s < kSlots; ++s)
#pragma unroll
    for (int r = 0; r < 4; ++r) f[s][r] = beside[s][r] = 0x3c003c00u ^ (threadIdx.x * 16 + s * 4 + r);
  const uint64_t b0 = desc_sw128(b_addr);
  const __half2 unit = __float2half2_rn(1048576.0f * 0.01f), minus = __float2half2_rn(-0.01f);
  auto load_word = [&](int ks, int t) { return words[(ks * 128 + wg * 64 + lane * 2 + warp / 2 + t) % 4096]; };
  // Step s (global, of tile s / 8) decoded into slot s % kSlots; the word of step s + 8 loaded in its place.
  auto decode_step = [&](uint32_t (&dst)[kSlots][4], int slot, int ks, int t) {
    const uint32_t w = q[ks];
    q[ks] = load_word(ks, t + 1);
    decode_word(w, warp, unit, minus, dst[slot]);
  };
#pragma unroll
  for (int ks = 0; ks < 8; ++ks) q[ks] = load_word(ks, 0);
  // Prologue: the ring's first group decoded.
#pragma unroll
  for (int s = 0; s < G; ++s) decode_step(BESIDE ? beside : f, s, s % 8, s / 8);
  asm volatile("bar.sync 1, %0;\n" ::"r"(warpgroups * 128));
  const long long t0 = clock64();
  for (int t = 0; t < tiles; t += RING) {
#pragma unroll
    for (int g = 0; g < kGroups; ++g) {
      keep_acc(d);
      fence();
#pragma unroll
      for (int s = g * G; s < (g + 1) * G; ++s) mma_rs(d, f[s], step_desc(b0, s % 8));
      commit();
      wait_group<kGroups - 1>();
      // The oldest group is done: its slots take the next group's steps.
      const int next = (g + 1) % kGroups;
#pragma unroll
      for (int s = next * G; s < (next + 1) * G; ++s) {
        if constexpr (BESIDE) {
          decode_step(beside, s, s % 8, t + s / 8);
          asm volatile("" ::"r"(beside[s][0]), "r"(beside[s][1]), "r"(beside[s][2]), "r"(beside[s][3]) : "memory");
        } else {
          asm volatile("" ::"r"(f[s][0]), "r"(f[s][1]), "r"(f[s][2]), "r"(f[s][3]) : "memory");
          decode_step(f, s, s % 8, t + s / 8 + (next == 0 ? RING : 0));
        }
      }
    }
  }
  wait_group<0>();
  keep_acc(d);
  const long long t1 = clock64();
  if (threadIdx.x % 128 == 0) cycles[blockIdx.x * 4 + wg] = t1 - t0;
  float sum = 0.0f;
#pragma unroll
  for (int e = 0; e < 32; ++e) sum += d[e];
#pragma unroll
  for (int s = 0; s < kSlots; ++s) sum += __uint_as_float(beside[s][0] ^ f[s][1]);
  if (sum == 1234.5f) sink[threadIdx.x] = sum;
}

// Interleaved (session 35): tile t + 1's decoding placed between tile t's wgmmas, one step after each, so
// that the warp decodes while it would otherwise wait to hand the tensor pipe its next register-operand
// wgmma. The fragments rotate through SETS register sets: with 2, tile t - 1's wgmmas must be complete
// before tile t's are issued (wait_group 0: the pipe drains once per tile); with 3, tile t - 2's
// (wait_group 1). CHUNK wgmmas, then CHUNK steps decoded. Words loaded a tile ahead, as in the ring modes.
template <int SETS, int CHUNK, int MOVED = 0>
__global__ void __launch_bounds__(384, 1) interleave_rate(int tiles, int warpgroups, long long* cycles, float* sink) {
  extern __shared__ __align__(1024) unsigned char smem[];
  const int wg = threadIdx.x / 128;
  if (wg >= warpgroups) return;
  const uint32_t base = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  const uint32_t b_addr = (base + 1023) & ~1023u;
  const uint32_t* words = reinterpret_cast<const uint32_t*>(smem + (b_addr - base) + 16384 + 65536);
  const int warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32;
  float d[32];
#pragma unroll
  for (int e = 0; e < 32; ++e) d[e] = 0.0f;
  uint32_t f[SETS][8][4], q[8] = {}, tmp[8][4];
#pragma unroll
  for (int k = 0; k < SETS; ++k)
#pragma unroll
    for (int s = 0; s < 8; ++s)
#pragma unroll
      for (int r = 0; r < 4; ++r) f[k][s][r] = 0x3c003c00u ^ (threadIdx.x * 16 + s * 4 + r);
  const uint64_t b0 = desc_sw128(b_addr);
  const __half2 unit = __float2half2_rn(1048576.0f * 0.01f), minus = __float2half2_rn(-0.01f);
  auto load_word = [&](int ks, int t) { return words[(ks * 128 + wg * 64 + lane * 2 + warp / 2 + t) % 4096]; };
  auto decode_step = [&](uint32_t (&dst)[4], int ks, int t) {
    const uint32_t w = q[ks];
    q[ks] = load_word(ks, t + 1);
    decode_word(w, warp, unit, minus, dst);
  };
  auto mask_step = [&](uint32_t (&dst)[4], int ks, int t) {
    const uint32_t w = q[ks];
    q[ks] = load_word(ks, t + 1);
    code_masks(w, warp, dst);
  };
#pragma unroll
  for (int ks = 0; ks < 8; ++ks) q[ks] = load_word(ks, 0);
#pragma unroll
  for (int ks = 0; ks < 8; ++ks) decode_step(f[0][ks], ks, 0);
  asm volatile("bar.sync 1, %0;\n" ::"r"(warpgroups * 128));
  const long long t0 = clock64();
  int done = 0;
  for (int t = 0; t < tiles; t += SETS) {
#pragma unroll
    for (int k = 0; k < SETS; ++k) {
      // The set that tile t + k + 1 is decoded into was last read by tile t + k + 1 - SETS.
      if constexpr (MOVED == 2) {
        // (waits after the group, below)
      } else if constexpr (SETS == 2) {
        wait_group<0>();
      } else {
        wait_group<1>();
      }
      const int next = (k + 1) % SETS;
#pragma unroll
      for (int s = 0; s < 8; ++s)
        asm volatile("" ::"r"(f[next][s][0]), "r"(f[next][s][1]), "r"(f[next][s][2]), "r"(f[next][s][3]) : "memory");
      keep_acc(d);
      fence();
#pragma unroll
      for (int c = 0; c < 8; c += CHUNK) {
#pragma unroll
        for (int ks = c; ks < c + CHUNK; ++ks) mma_rs(d, f[k][ks], step_desc(b0, ks));
#pragma unroll
        for (int ks = c; ks < c + CHUNK; ++ks) {
          if constexpr (MOVED == 2)
            mask_step(tmp[ks], ks, t + k + 1);
          else
            decode_step(MOVED ? tmp[ks] : f[next][ks], ks, t + k + 1);
        }
      }
      commit();
      // MOVED: the decoding wrote temporaries; copied into the next set's fragments only now, after the
      // group (so that no fragment register is written between two wgmmas).
      if constexpr (MOVED == 1) {
#pragma unroll
        for (int ks = 0; ks < 8; ++ks)
#pragma unroll
          for (int r = 0; r < 4; ++r) asm volatile("mov.b32 %0, %1;\n" : "=r"(f[next][ks][r]) : "r"(tmp[ks][r]));
      }
      // MOVED 2: the masks between the wgmmas, the fmas (which write the fragments) after the group.
      if constexpr (MOVED == 2) {
        // The next set was last read by tile t + k + 1 - SETS: the oldest group in flight.
        wait_group<SETS - 1>();
#pragma unroll
        for (int s = 0; s < 8; ++s)
          asm volatile("" ::"r"(f[next][s][0]), "r"(f[next][s][1]), "r"(f[next][s][2]), "r"(f[next][s][3]) : "memory");
#pragma unroll
        for (int ks = 0; ks < 8; ++ks)
#pragma unroll
          for (int r = 0; r < 4; ++r) f[next][ks][r] = scale_code(tmp[ks][r], unit, minus);
      }
      ++done;
    }
  }
  wait_group<0>();
  keep_acc(d);
  const long long t1 = clock64();
  if (threadIdx.x % 128 == 0) cycles[blockIdx.x * 4 + wg] = (t1 - t0) * tiles / done;
  float sum = 0.0f;
#pragma unroll
  for (int e = 0; e < 32; ++e) sum += d[e];
#pragma unroll
  for (int k = 0; k < SETS; ++k) sum += __uint_as_float(f[k][0][0] ^ f[k][7][3]);
  if (sum == 1234.5f) sink[threadIdx.x] = sum;
}

using RateKernel = void (*)(int, int, long long*, float*);
int measure(RateKernel kernel, const char* name, int sms, int warpgroups, long long* cycles, float* sink,
            int threads = 384) {
  const int tiles = 2000;
  const size_t smem = 1024 + 16384 + 4 * 32768 + 16384;  // B, SS A buffers of up to four warpgroups, words
  CK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  std::vector<double> per;
  for (int rep = 0; rep < 3; ++rep) {
    kernel<<<sms, threads, smem>>>(tiles, warpgroups, cycles, sink);
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    std::vector<long long> c(sms * 4);
    CK(cudaMemcpy(c.data(), cycles, c.size() * sizeof(long long), cudaMemcpyDeviceToHost));
    for (int b = 0; b < sms; ++b)
      for (int w = 0; w < warpgroups; ++w) per.push_back(static_cast<double>(c[b * 4 + w]) / tiles);
  }
  std::sort(per.begin(), per.end());
  const double median = per[per.size() / 2];
  // 8 wgmmas of 64 x 64 x 16 per warpgroup and tile: 32 cycles each at 4096 flops per SM and cycle.
  std::printf("%-44s %d warpgroup(s): %7.1f cycles per tile per warpgroup (median; ideal %d), tensor busy %.0f%%\n",
              name, warpgroups, median, 256 * warpgroups, 100.0 * 256 * warpgroups / median);
  return 0;
}
template <int MODE>
int measure(const char* name, int sms, int warpgroups, long long* cycles, float* sink) {
  return measure(rate<MODE>, name, sms, warpgroups, cycles, sink);
}

int main(int argc, char** argv) {
  int sms = 0;
  CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  long long* cycles;
  float* sink;
  CK(cudaMalloc(&cycles, sms * 4 * sizeof(long long)));
  CK(cudaMalloc(&sink, 512 * sizeof(float)));
  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, 0));
  std::printf("%s, %d SMs; one block per SM, 2000 tiles of 8 m64n64k16 wgmmas per warpgroup\n", prop.name, sms);
  // `wide` (session 37): more warpgroups, each with its own accumulators and tiles, so that while some are held
  // at their register-operand wgmmas another decodes. 512-thread blocks cap registers at 128 per thread.
  if (argc > 1 && std::string(argv[1]) == "wide") {
    for (int wgs : {2, 3}) {
      if (measure<0>("RS, fixed fragments", sms, wgs, cycles, sink)) return 1;
      if (measure<1>("RS, decoded per tile (the kernel)", sms, wgs, cycles, sink)) return 1;
    }
    for (int wgs : {2, 3, 4}) {
      if (measure(rate<0, 512>, "RS, fixed fragments, 512 threads", sms, wgs, cycles, sink, 512)) return 1;
      if (measure(rate<1, 512>, "RS, decoded per tile, 512 threads", sms, wgs, cycles, sink, 512)) return 1;
      if (measure(rate<2, 512>, "SS, 512 threads", sms, wgs, cycles, sink, 512)) return 1;
    }
    return 0;
  }
  for (int wgs : {1, 2}) {
    if (measure<0>("RS, fixed fragments", sms, wgs, cycles, sink)) return 1;
    if (measure<1>("RS, decoded per tile (the kernel)", sms, wgs, cycles, sink)) return 1;
    if (measure<2>("SS", sms, wgs, cycles, sink)) return 1;
  }
  if (measure<3>("RS, decoded, ping-pong", sms, 2, cycles, sink)) return 1;
  for (int wgs : {1, 2}) {
    if (measure<4>("SS, decoded (unused) as well", sms, wgs, cycles, sink)) return 1;
    if (measure<5>("SS, decoded to shared memory", sms, wgs, cycles, sink)) return 1;
  }
  for (int wgs : {1, 2}) {
    if (measure(ring_rate<8, 2, true>, "RS fixed, decoding beside (G 8 x 2)", sms, wgs, cycles, sink)) return 1;
    if (measure(ring_rate<1, 1, true>, "RS fixed, decoding beside (G 1)", sms, wgs, cycles, sink)) return 1;
    if (measure(ring_rate<8, 2, false>, "ring G 8 x 2 tiles (kernel, words ahead)", sms, wgs, cycles, sink)) return 1;
    if (measure(ring_rate<4, 2, false>, "ring G 4 x 2 tiles", sms, wgs, cycles, sink)) return 1;
    if (measure(ring_rate<2, 2, false>, "ring G 2 x 2 tiles", sms, wgs, cycles, sink)) return 1;
    if (measure(ring_rate<4, 1, false>, "ring G 4 x 1 tile", sms, wgs, cycles, sink)) return 1;
    if (measure(ring_rate<2, 1, false>, "ring G 2 x 1 tile", sms, wgs, cycles, sink)) return 1;
    if (measure(ring_rate<1, 1, false>, "ring G 1 x 1 tile (per step)", sms, wgs, cycles, sink)) return 1;
  }
  for (int wgs : {1, 2}) {
    if (measure(interleave_rate<2, 1>, "interleaved 1, 2 sets (drain per tile)", sms, wgs, cycles, sink)) return 1;
    if (measure(interleave_rate<2, 4>, "interleaved 4, 2 sets (drain per tile)", sms, wgs, cycles, sink)) return 1;
    if (measure(interleave_rate<3, 1>, "interleaved 1, 3 sets", sms, wgs, cycles, sink)) return 1;
    if (measure(interleave_rate<3, 2>, "interleaved 2, 3 sets", sms, wgs, cycles, sink)) return 1;
    if (measure(interleave_rate<3, 4>, "interleaved 4, 3 sets", sms, wgs, cycles, sink)) return 1;
    if (measure(interleave_rate<2, 1, 2>, "interleaved 1, 2 sets, masks only", sms, wgs, cycles, sink)) return 1;
    if (measure(interleave_rate<3, 1, 2>, "interleaved 1, 3 sets, masks only", sms, wgs, cycles, sink)) return 1;
    if (measure(interleave_rate<2, 4, 2>, "interleaved 4, 2 sets, masks only", sms, wgs, cycles, sink)) return 1;
    if (measure(interleave_rate<3, 4, 2>, "interleaved 4, 3 sets, masks only", sms, wgs, cycles, sink)) return 1;
  }
  return 0;
}

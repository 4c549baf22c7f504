// TriRun: FP16 x INT2 matrix multiplication on tensor cores.
//
//   C (m, n) fp16 = A (m, k) fp16  x  W (k, n),   W[r][c] = (code[r][c] - 1) * scale[r / g][c]
//
// The weights arrive as 2-bit codes packed by @trirun/packing in the reference
// TriRun layout (docs: trirun-format.md): B is int32 (k/16, n), every word holds
// the 16 codes that one lane of a warp needs for the B operand of two
// m16n8k16 tensor-core instructions; s is fp16 (k/g, n), permuted so that a
// lane finds its scales in one 16-byte vector. This file depends on base CUDA
// only, so other frameworks can take it with trirun.h.
//
// How the kernel spends its time, and the tricks that keep it fed:
//
// * Work partitioning ("striped"). The (k, n) weight matrix is cut into tiles
//   of thread_k x thread_n. Tiles are ordered column by column (all k tiles of
//   the first n column, then the next column...), and every thread block takes
//   one contiguous run of `iters` tiles. A run may end inside a column and the
//   next block's run continue it: every SM streams the same number of weight
//   bytes whatever the shape, and a column is shared by at most a few blocks,
//   which combine their partial sums in the output buffer (global reduction).
// * Batch slices. Rows of A are processed 16 x m_blocks (<= 64) at a time; for
//   larger m, up to `max_par` 64-row slices become extra "columns" of the same
//   striped schedule (so the weights of a column are read once per slice but
//   from L2 for all but the first), and the host loops over the rest.
// * A multi-stage cp.async pipeline moves A, B and scale tiles from global to
//   shared memory while the tensor cores work on an earlier stage. Weights are
//   read exactly once, with 16-byte copies that bypass L1 (.cg).
// * Dequantization straight into tensor-core fragments: one 32-bit word gives,
//   with a mask and an OR against the exponent of 1024.0 (one `lop3`), two fp16
//   values 1024 + 4^j * code in the two halves of a register; one `hfma2`
//   turns that exactly into code - 1, one `hmul2` applies the group scale.
// * Warps of a block split the tile: n_warps warps side by side along n
//   (64 columns each) and k_warps along k. The k_warps partial results of one
//   output tile are summed through shared memory at the end of each run, so a
//   block has 8 warps to hide latency without a larger output tile.
// * Global reduction in the output: the blocks that share a column take turns
//   (a lock per column in the workspace, acquired in the order in which their
//   parts finish) reading the fp16 partial from C (in L2), adding their fp32
//   accumulators and writing it back; the last writes the result and resets
//   the lock, so the workspace is zero again after every call.
// * Per-column scales (g = k) are applied once, in fp32, to the accumulators
//   instead of to every dequantized weight.

#include "trirun.h"

#include <cuda_fp16.h>
#include <stdint.h>

namespace trirun {

constexpr int kThreads = 256;   // 8 warps per block
constexpr int kMaxPar = 16;     // 64-row batch slices per launch

__host__ __device__ constexpr int ceil_div(int a, int b) { return (a + b - 1) / b; }

// ---------------------------------------------------------------- PTX helpers

// 16-byte asynchronous copy global -> shared that bypasses L1. With
// `valid == false` nothing is read and the destination is zero-filled, which
// gives the padding rows of A below m.
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid = true) {
  const uint32_t dst = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int n>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(n));
}

// Four 8x8 fp16 matrices from shared memory: the A operand of one m16n8k16.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&frag)[4], const void* smem) {
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(frag[0]), "=r"(frag[1]), "=r"(frag[2]), "=r"(frag[3])
               : "r"(addr));
}

// D = A * B + D, fp16 inputs, fp32 accumulation.
__device__ __forceinline__ void mma_16816(const uint32_t (&a)[4], uint32_t b0, uint32_t b1, float (&c)[4]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
      "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// (q & mask) | 0x64006400 in one instruction: lop3 with the truth table of
// (a & b) | c.
__device__ __forceinline__ uint32_t mask_or_1024(uint32_t q, uint32_t mask) {
  uint32_t r;
  asm volatile("lop3.b32 %0, %1, %2, %3, %4;\n"
               : "=r"(r)
               : "r"(q), "r"(mask), "r"(0x64006400u), "n"((0xf0 & 0xcc) | 0xaa));
  return r;
}

__device__ __forceinline__ uint32_t as_u32(half2 h) { return *reinterpret_cast<uint32_t*>(&h); }
__device__ __forceinline__ half2 as_h2(uint32_t u) { return *reinterpret_cast<half2*>(&u); }

// Column lock of the global reduction: wait until it reads `value`.
__device__ __forceinline__ void lock_wait(const int* lock, int value) {
  if (threadIdx.x == 0) {
    int seen;
    do {
      asm volatile("ld.global.acquire.gpu.b32 %0, [%1];\n" : "=r"(seen) : "l"(lock));
    } while (seen != value);
  }
  __syncthreads();
}

// Pass the column to the next block, or reset the lock after the last one.
// The barrier makes every thread's C writes precede thread 0's fence.
__device__ __forceinline__ void lock_release(int* lock, bool last) {
  __syncthreads();
  if (threadIdx.x == 0) {
    if (last) {
      asm volatile("st.global.relaxed.gpu.b32 [%0], %1;\n" ::"l"(lock), "r"(0));
    } else {
      asm volatile("fence.acq_rel.gpu;\n" ::);
      asm volatile("red.relaxed.gpu.global.add.s32 [%0], %1;\n" ::"l"(lock), "r"(1));
    }
  }
}

// ------------------------------------------------------------- dequantization

// One packed word holds, for one lane, the B fragments of two adjacent 16x16
// tiles (tile_a, tile_b) of a 64-column chunk. Code number t sits in bits
// 2t..2t+1; the packer interleaved them so that codes t and t + 8 form an fp16
// pair (rows r and r + 1 of one column):
//   t = 0: tile_a, n8 block 0, register 0     t = 4: tile_a, n8 block 1, register 0
//   t = 1: tile_b, n8 block 0, register 0     t = 5: tile_b, n8 block 1, register 0
//   t = 2: tile_a, n8 block 0, register 1     t = 6: tile_a, n8 block 1, register 1
//   t = 3: tile_b, n8 block 0, register 1     t = 7: tile_b, n8 block 1, register 1
// Masking code t in place (no shift) leaves 1024 + 4^(t%4) * code in each half;
// multiplying by 4^-(t%4) and adding -(1024 * 4^-(t%4) + 1) is exact in fp16
// and yields code - 1 in {-1, 0, 1, 2}. Only codes 4..7 need one shift.
// out[f][reg]: f = 2 * tile + n8 block, relative to tile_a's first n8 block.
__device__ __forceinline__ void dequant_word(uint32_t q, uint32_t (&out)[4][2]) {
  const half2 sub0 = __float2half2_rn(1025.0f);
  const half2 mul1 = __float2half2_rn(0.25f), add1 = __float2half2_rn(-257.0f);
  const half2 mul2 = __float2half2_rn(0.0625f), add2 = __float2half2_rn(-65.0f);
  const half2 mul3 = __float2half2_rn(0.015625f), add3 = __float2half2_rn(-17.0f);
  const uint32_t hi = q >> 8;
  out[0][0] = as_u32(__hsub2(as_h2(mask_or_1024(q, 0x00030003u)), sub0));
  out[2][0] = as_u32(__hfma2(as_h2(mask_or_1024(q, 0x000c000cu)), mul1, add1));
  out[0][1] = as_u32(__hfma2(as_h2(mask_or_1024(q, 0x00300030u)), mul2, add2));
  out[2][1] = as_u32(__hfma2(as_h2(mask_or_1024(q, 0x00c000c0u)), mul3, add3));
  out[1][0] = as_u32(__hsub2(as_h2(mask_or_1024(hi, 0x00030003u)), sub0));
  out[3][0] = as_u32(__hfma2(as_h2(mask_or_1024(hi, 0x000c000cu)), mul1, add1));
  out[1][1] = as_u32(__hfma2(as_h2(mask_or_1024(hi, 0x00300030u)), mul2, add2));
  out[3][1] = as_u32(__hfma2(as_h2(mask_or_1024(hi, 0x00c000c0u)), mul3, add3));
}

// ---------------------------------------------------------------- the kernel

// Template parameters fix every loop bound so that register arrays stay in
// registers and most shared-memory offsets are compile-time constants.
//   M_BLOCKS: 16-row blocks of A per batch slice (1..4)
//   K_BLOCKS: 16-row blocks of k per tile (thread_k / 16)
//   N_BLOCKS: 16-column blocks of n per tile (thread_n / 16)
//   STAGES:   depth of the cp.async pipeline
//   GROUPED:  true for g = 128 (scales per group, applied in fp16 while
//             dequantizing), false for g = k (per column, applied in fp32 at the end)
template <int M_BLOCKS, int K_BLOCKS, int N_BLOCKS, int STAGES, bool GROUPED>
__global__ void __launch_bounds__(kThreads, 1)
    trirun_kernel(const int4* __restrict__ A, const int4* __restrict__ B, const int4* __restrict__ S,
                  int4* __restrict__ C, int prob_m, int prob_n, int prob_k, int* locks) {
  constexpr int kWarps = kThreads / 32;
  constexpr int kNWarps = N_BLOCKS / 4;               // each warp owns 64 columns
  constexpr int kKWarps = kWarps / kNWarps;           // warps splitting k in a tile
  constexpr int kKStepsPerWarp = K_BLOCKS / kKWarps;  // k16 steps per warp per tile
  static_assert(kNWarps * kKWarps == kWarps, "8 warps must tile n x k");
  static_assert(kKStepsPerWarp * kKWarps == K_BLOCKS, "k blocks must split over the k warps");
  constexpr int kThreadK = K_BLOCKS * 16;
  constexpr int kThreadN = N_BLOCKS * 16;
  constexpr int kRows = M_BLOCKS * 16;

  // Shared-memory stage: A tile (kRows x kThreadK fp16, rows of kThreadK / 8
  // int4, XOR-swizzled against ldmatrix bank conflicts), B tile (K_BLOCKS rows
  // of kThreadN words) and one row of kThreadN scales.
  constexpr int kARowVecs = kThreadK / 8;
  constexpr int kAStageVecs = kRows * kARowVecs;
  constexpr int kBStageVecs = K_BLOCKS * kThreadN / 4;
  constexpr int kSStageVecs = kThreadN / 8;
  constexpr int kStageVecs = kAStageVecs + kBStageVecs + kSStageVecs;
  extern __shared__ int4 smem[];

  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int n_warp = warp % kNWarps;
  const int k_warp = warp / kNWarps;

  const int k_tiles = prob_k / kThreadK;
  const int n_tiles = prob_n / kThreadN;
  // Batch slices of this launch: rows [64 p, 64 p + 64) of A and C.
  const int par = ceil_div(prob_m, 64);
  const int total_tiles = k_tiles * n_tiles * par;
  const int iters = ceil_div(total_tiles, static_cast<int>(gridDim.x));
  const int first_tile = iters * blockIdx.x;
  const int end_tile = min(first_tile + iters, total_tiles);

  const int a_row_vecs = prob_k / 8;  // int4 per row of A
  const int c_row_halves = prob_n;

  // Scale rows are permuted in chunks of 64 (grouped) or 32 (per column)
  // entries; the row stride is n halves in both cases.
  const int s_row_vecs = prob_n / 8;

  for (int tile = first_tile; tile < end_tile;) {
    // --- the slice: this block's run of tiles inside one column
    const int column = tile / k_tiles;  // over par * n_tiles columns
    const int k_tile0 = tile % k_tiles;
    const int slice_tiles = min(end_tile - tile, k_tiles - k_tile0);
    const int slice = column / n_tiles;  // batch slice
    const int n_tile = column % n_tiles;
    // Blocks sharing this column, and our turn in its reduction. The block
    // whose run starts in the column finishes its part first, so turns go
    // from the highest block index down.
    const int first_block = (column * k_tiles) / iters;
    const int last_block = ((column + 1) * k_tiles - 1) / iters;
    const int slice_count = last_block - first_block + 1;
    const int slice_idx = last_block - static_cast<int>(blockIdx.x);

    const int row0 = slice * 64;
    const int rows = min(kRows, prob_m - row0);  // valid rows of this slice (>= 1)

    // Global sources of the slice's first tile.
    const int4* a_src = A + static_cast<size_t>(row0) * a_row_vecs + k_tile0 * kARowVecs;
    const int4* b_src = B + static_cast<size_t>(k_tile0 * K_BLOCKS) * (prob_n / 4) + n_tile * (kThreadN / 4);
    const int4* s_src = S + n_tile * (kThreadN / 8);

    // Copies one tile (index i of the slice) into pipeline stage `stage`.
    auto load_tile = [&](int i, int stage) {
      int4* sh = smem + stage * kStageVecs;
      int4* sh_a = sh;
      int4* sh_b = sh + kAStageVecs;
      int4* sh_s = sh_b + kBStageVecs;
      const int4* a = a_src + i * kARowVecs;
#pragma unroll
      for (int v = threadIdx.x; v < kAStageVecs; v += kThreads) {
        const int r = v / kARowVecs;
        const int c = v % kARowVecs;
        const bool valid = r < rows;
        // Padding rows read nothing: point them at row 0 to keep the address legal.
        cp_async16(&sh_a[r * kARowVecs + (c ^ (r % 8))], a + static_cast<size_t>(valid ? r : 0) * a_row_vecs + c,
                   valid);
      }
      const int4* b = b_src + static_cast<size_t>(i * K_BLOCKS) * (prob_n / 4);
#pragma unroll
      for (int v = threadIdx.x; v < kBStageVecs; v += kThreads) {
        const int r = v / (kThreadN / 4);
        const int c = v % (kThreadN / 4);
        cp_async16(&sh_b[v], b + static_cast<size_t>(r) * (prob_n / 4) + c);
      }
      if (GROUPED && threadIdx.x < kSStageVecs) {
        // The scale row of the group this tile lies in; one row for g = k.
        const int group_row = GROUPED ? ((k_tile0 + i) * kThreadK) / 128 : 0;
        cp_async16(&sh_s[threadIdx.x], s_src + static_cast<size_t>(group_row) * s_row_vecs + threadIdx.x);
      }
    };

    float acc[M_BLOCKS][8][4];
#pragma unroll
    for (int mb = 0; mb < M_BLOCKS; ++mb)
#pragma unroll
      for (int f = 0; f < 8; ++f)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[mb][f][e] = 0.0f;

    // Prologue: fill STAGES - 1 stages. Every iteration commits one group
    // (possibly empty) so that wait_group counts stay uniform.
#pragma unroll
    for (int st = 0; st < STAGES - 1; ++st) {
      if (st < slice_tiles) load_tile(st, st);
      cp_async_commit();
    }

    for (int i = 0; i < slice_tiles; ++i) {
      cp_async_wait<STAGES - 2>();
      // Tile i has landed, and every warp is done with the stage that the
      // next copy overwrites (the one read in iteration i - 1).
      __syncthreads();
      const int next = i + STAGES - 1;
      if (next < slice_tiles) load_tile(next, next % STAGES);
      cp_async_commit();

      const int4* sh = smem + (i % STAGES) * kStageVecs;
      const int4* sh_a = sh;
      const uint32_t* sh_b = reinterpret_cast<const uint32_t*>(sh + kAStageVecs);
      const int4* sh_s = sh + kAStageVecs + kBStageVecs;

      // Grouped scales of this lane's 8 columns (one per n8 block): one
      // 16-byte read, position 8 * (lane / 4) of the warp's 64-entry chunk.
      uint32_t scale2[8];
      if constexpr (GROUPED) {
        const int4 sv = sh_s[n_warp * 8 + lane / 4];
        const half* sh8 = reinterpret_cast<const half*>(&sv);
#pragma unroll
        for (int f = 0; f < 8; ++f) scale2[f] = as_u32(__half2half2(sh8[f]));
      }

#pragma unroll
      for (int ks = 0; ks < kKStepsPerWarp; ++ks) {
        const int kb = k_warp * kKStepsPerWarp + ks;  // k16 block within the tile
        uint32_t a_frag[M_BLOCKS][4];
#pragma unroll
        for (int mb = 0; mb < M_BLOCKS; ++mb) {
          const int r = mb * 16 + (lane % 16);
          const int c = kb * 2 + lane / 16;
          ldmatrix_x4(a_frag[mb], &sh_a[r * kARowVecs + (c ^ (r % 8))]);
        }
        // This lane's two words of the warp's 64-column chunk.
        const uint2 words = *reinterpret_cast<const uint2*>(&sh_b[kb * kThreadN + n_warp * 64 + lane * 2]);
#pragma unroll
        for (int w = 0; w < 2; ++w) {
          uint32_t b_frag[4][2];
          dequant_word(w == 0 ? words.x : words.y, b_frag);
          // n8 block order within the chunk: tile j covers blocks 2j, 2j + 1.
          // dequant_word returns out[2 * tile_rel + block] with tile_rel 0 (a)
          // or 1 (b); tile a = 2w, so the chunk block is 4w + out index.
#pragma unroll
          for (int f = 0; f < 4; ++f) {
            const int nb = 4 * w + f;
            uint32_t b0 = b_frag[f][0], b1 = b_frag[f][1];
            if constexpr (GROUPED) {
              b0 = as_u32(__hmul2(as_h2(b0), as_h2(scale2[nb])));
              b1 = as_u32(__hmul2(as_h2(b1), as_h2(scale2[nb])));
            }
#pragma unroll
            for (int mb = 0; mb < M_BLOCKS; ++mb) mma_16816(a_frag[mb], b0, b1, acc[mb][nb]);
          }
        }
      }
    }

    // --- end of the slice: drain the pipeline before shared memory is reused
    cp_async_wait<0>();
    __syncthreads();

    // Sum the k_warps partial tiles through shared memory, one m block at a
    // time (32 floats per lane), into the warps with k_warp == 0.
    if constexpr (kKWarps > 1) {
      float* red = reinterpret_cast<float*>(smem);
#pragma unroll
      for (int mb = 0; mb < M_BLOCKS; ++mb) {
        if (k_warp > 0) {
          float* dst = red + ((k_warp - 1) * kNWarps + n_warp) * 32 * 32;
#pragma unroll
          for (int f = 0; f < 8; ++f)
            *reinterpret_cast<float4*>(&dst[(f * 32 + lane) * 4]) =
                make_float4(acc[mb][f][0], acc[mb][f][1], acc[mb][f][2], acc[mb][f][3]);
        }
        __syncthreads();
        if (k_warp == 0) {
#pragma unroll
          for (int kw = 1; kw < kKWarps; ++kw) {
            const float* src = red + ((kw - 1) * kNWarps + n_warp) * 32 * 32;
#pragma unroll
            for (int f = 0; f < 8; ++f) {
              const float4 v = *reinterpret_cast<const float4*>(&src[(f * 32 + lane) * 4]);
              acc[mb][f][0] += v.x;
              acc[mb][f][1] += v.y;
              acc[mb][f][2] += v.z;
              acc[mb][f][3] += v.w;
            }
          }
        }
        __syncthreads();
      }
    }

    // Per-column scales, in fp32, before anything is written: every partial
    // in C is then already in output units.
    if constexpr (!GROUPED) {
      if (k_warp == 0) {
        // 32-entry chunks: lane % 4 finds its 8 scales (columns 2i, 2i + 1 of
        // n8 blocks 0..3) at 8 * (lane % 4), and of blocks 4..7 32 further.
        const half* s_col = reinterpret_cast<const half*>(S) + n_tile * kThreadN + n_warp * 64;
        const int4 lo = __ldg(reinterpret_cast<const int4*>(s_col + 8 * (lane % 4)));
        const int4 hi = __ldg(reinterpret_cast<const int4*>(s_col + 32 + 8 * (lane % 4)));
        const half2* lo2 = reinterpret_cast<const half2*>(&lo);
        const half2* hi2 = reinterpret_cast<const half2*>(&hi);
#pragma unroll
        for (int f = 0; f < 8; ++f) {
          const float2 sc = __half22float2(f < 4 ? lo2[f] : hi2[f - 4]);
#pragma unroll
          for (int mb = 0; mb < M_BLOCKS; ++mb) {
            acc[mb][f][0] *= sc.x;
            acc[mb][f][1] *= sc.y;
            acc[mb][f][2] *= sc.x;
            acc[mb][f][3] *= sc.y;
          }
        }
      }
    }

    // --- global reduction and output
    int* lock = locks + column;
    if (slice_count > 1) lock_wait(lock, slice_idx);
    if (k_warp == 0) {
      half* c_base = reinterpret_cast<half*>(C) + static_cast<size_t>(row0) * c_row_halves + n_tile * kThreadN +
                     n_warp * 64;
      const bool read_partial = slice_count > 1 && slice_idx > 0;
#pragma unroll
      for (int mb = 0; mb < M_BLOCKS; ++mb) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          // Accumulator layout of m16n8: elements 0,1 at row lane / 4, columns
          // 2 (lane % 4) + {0, 1}; elements 2,3 eight rows further down.
          const int r = mb * 16 + lane / 4 + 8 * h;
          if (r < rows) {
            half* c_row = c_base + static_cast<size_t>(r) * c_row_halves + 2 * (lane % 4);
#pragma unroll
            for (int f = 0; f < 8; ++f) {
              float x = acc[mb][f][2 * h], y = acc[mb][f][2 * h + 1];
              uint32_t* dst = reinterpret_cast<uint32_t*>(c_row + 8 * f);
              if (read_partial) {
                const uint32_t prev = __ldcg(dst);
                const float2 p = __half22float2(as_h2(prev));
                x += p.x;
                y += p.y;
              }
              __stcg(dst, as_u32(__floats2half2_rn(x, y)));
            }
          }
        }
      }
    }
    if (slice_count > 1) lock_release(lock, slice_idx == slice_count - 1);
    // Shared memory is refilled by the next slice's prologue only after every
    // warp has left the reduction above.
    __syncthreads();
    tile += slice_tiles;
  }
}

// ------------------------------------------------------------------ dispatch

struct Shape {
  int k_blocks, n_blocks;
};

template <int M_BLOCKS, int K_BLOCKS, int N_BLOCKS, bool GROUPED>
constexpr int kStagesFor() {
  return M_BLOCKS == 1 ? 8 : 4;
}

template <int M_BLOCKS, int K_BLOCKS, int N_BLOCKS, bool GROUPED>
size_t smem_bytes() {
  constexpr int stages = kStagesFor<M_BLOCKS, K_BLOCKS, N_BLOCKS, GROUPED>();
  constexpr size_t stage = (M_BLOCKS * 16 * K_BLOCKS * 16 * 2) + (K_BLOCKS * N_BLOCKS * 16 * 4) + N_BLOCKS * 16 * 2;
  constexpr size_t pipeline = stages * stage;
  constexpr int n_warps = N_BLOCKS / 4;
  constexpr int k_warps = 8 / n_warps;
  constexpr size_t reduce = static_cast<size_t>(k_warps - 1) * n_warps * 32 * 32 * 4;
  return pipeline > reduce ? pipeline : reduce;
}

template <int M_BLOCKS, int K_BLOCKS, int N_BLOCKS, bool GROUPED>
cudaError_t launch(const void* A, const void* B, const void* s, void* C, int m, int n, int k, int* locks,
                   int blocks, int device_smem_limit, cudaStream_t stream, int* stages_out) {
  constexpr int stages = kStagesFor<M_BLOCKS, K_BLOCKS, N_BLOCKS, GROUPED>();
  auto kernel = trirun_kernel<M_BLOCKS, K_BLOCKS, N_BLOCKS, stages, GROUPED>;
  const size_t smem = smem_bytes<M_BLOCKS, K_BLOCKS, N_BLOCKS, GROUPED>();
  if (static_cast<int>(smem) > device_smem_limit) return cudaErrorInvalidConfiguration;
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  if (err != cudaSuccess) return err;
  *stages_out = stages;
  kernel<<<blocks, kThreads, smem, stream>>>(static_cast<const int4*>(A), static_cast<const int4*>(B),
                                             static_cast<const int4*>(s), static_cast<int4*>(C), m, n, k, locks);
  return cudaGetLastError();
}

template <int M_BLOCKS, bool GROUPED>
cudaError_t launch_tile(int thread_k, int thread_n, const void* A, const void* B, const void* s, void* C, int m, int n,
                        int k, int* locks, int blocks, int smem_limit, cudaStream_t stream, int* stages) {
  if (thread_k == 128 && thread_n == 128)
    return launch<M_BLOCKS, 8, 8, GROUPED>(A, B, s, C, m, n, k, locks, blocks, smem_limit, stream, stages);
  if (thread_k == 64 && thread_n == 256)
    return launch<M_BLOCKS, 4, 16, GROUPED>(A, B, s, C, m, n, k, locks, blocks, smem_limit, stream, stages);
  return cudaErrorInvalidValue;
}

template <bool GROUPED>
cudaError_t launch_m(int m_blocks, int thread_k, int thread_n, const void* A, const void* B, const void* s, void* C,
                     int m, int n, int k, int* locks, int blocks, int smem_limit, cudaStream_t stream, int* stages) {
  switch (m_blocks) {
    case 1:
      return launch_tile<1, GROUPED>(thread_k, thread_n, A, B, s, C, m, n, k, locks, blocks, smem_limit, stream,
                                     stages);
    case 2:
      return launch_tile<2, GROUPED>(thread_k, thread_n, A, B, s, C, m, n, k, locks, blocks, smem_limit, stream,
                                     stages);
    case 3:
      return launch_tile<3, GROUPED>(thread_k, thread_n, A, B, s, C, m, n, k, locks, blocks, smem_limit, stream,
                                     stages);
    default:
      return launch_tile<4, GROUPED>(thread_k, thread_n, A, B, s, C, m, n, k, locks, blocks, smem_limit, stream,
                                     stages);
  }
}

bool valid_tile(int thread_k, int thread_n) {
  return (thread_k == 128 && thread_n == 128) || (thread_k == 64 && thread_n == 256);
}

}  // namespace trirun

extern "C" size_t trirun_workspace_bytes(int n, int max_par) {
  if (max_par <= 0) max_par = trirun::kMaxPar;
  // One lock per (batch slice, column of the narrowest tile).
  return static_cast<size_t>(n / 128 > 0 ? n / 128 : 1) * static_cast<size_t>(max_par) * sizeof(int);
}

extern "C" const char* trirun_error_string(int code) {
  switch (code) {
    case TRIRUN_OK:
      return "success";
    case TRIRUN_ERR_SHAPE:
      return "unsupported shape: need m >= 1, k a multiple of 128 and n a multiple of 256";
    case TRIRUN_ERR_GROUPSIZE:
      return "unsupported group size: need 128 or k (-1)";
    case TRIRUN_ERR_CONFIG:
      return "no valid tile configuration: thread_k/thread_n must be 128/128 or 64/256 and divide k/n, "
             "and the tile must fit the device's shared memory";
    case TRIRUN_ERR_WORKSPACE:
      return "workspace too small (see trirun_workspace_bytes)";
    case TRIRUN_ERR_ALIGNMENT:
      return "A, B, s, C and the workspace must be 16-byte aligned";
    case TRIRUN_ERR_CUDA:
      return "a CUDA call failed";
    default:
      return "unknown error";
  }
}

extern "C" int trirun_matmul(const void* A, const void* B, const void* s, void* C, int m, int n, int k, int groupsize,
                             void* workspace, size_t workspace_bytes, int device, cudaStream_t stream,
                             TrirunConfig* config, cudaError_t* cuda_error) {
  using namespace trirun;
  if (cuda_error) *cuda_error = cudaSuccess;
  if (m < 1 || k < 128 || n < 256 || k % 128 != 0 || n % 256 != 0) return TRIRUN_ERR_SHAPE;
  if (groupsize == -1) groupsize = k;
  if (groupsize != 128 && groupsize != k) return TRIRUN_ERR_GROUPSIZE;
  const bool grouped = groupsize == 128 && k != 128;  // k == 128: one group either way; take the fp32 path
  auto misaligned = [](const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) != 0; };
  if (misaligned(A) || misaligned(B) || misaligned(s) || misaligned(C) || misaligned(workspace))
    return TRIRUN_ERR_ALIGNMENT;

  TrirunConfig req = config ? *config : TrirunConfig{};
  int max_par = req.max_par > 0 ? (req.max_par < kMaxPar ? req.max_par : kMaxPar) : kMaxPar;
  if (workspace_bytes < trirun_workspace_bytes(n, max_par)) return TRIRUN_ERR_WORKSPACE;

  int sms = req.sms, smem_limit = 0;
  cudaError_t err = cudaDeviceGetAttribute(&smem_limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  if (err == cudaSuccess && sms <= 0) err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  if (err != cudaSuccess) {
    if (cuda_error) *cuda_error = err;
    return TRIRUN_ERR_CUDA;
  }
  // Blocks of one column wait on each other: all of them must be resident at
  // once, so never launch more blocks than SMs.
  int device_sms = 0;
  err = cudaDeviceGetAttribute(&device_sms, cudaDevAttrMultiProcessorCount, device);
  if (err != cudaSuccess) {
    if (cuda_error) *cuda_error = err;
    return TRIRUN_ERR_CUDA;
  }
  if (sms > device_sms) return TRIRUN_ERR_CONFIG;

  const half* a_ptr = static_cast<const half*>(A);
  half* c_ptr = static_cast<half*>(C);
  TrirunConfig used{};
  for (int row = 0; row < m; row += 64 * max_par) {
    const int rows = m - row < 64 * max_par ? m - row : 64 * max_par;
    const int m_blocks = rows > 64 ? 4 : ceil_div(rows, 16);
    int thread_k = req.thread_k, thread_n = req.thread_n;
    if (thread_k <= 0 || thread_n <= 0) {
      // Small batches: a square tile gives more tiles (finer striping) per
      // weight byte; larger ones: a wide tile reuses each A fragment over
      // more columns.
      if (rows <= 16) {
        thread_k = 128;
        thread_n = 128;
      } else {
        thread_k = 64;
        thread_n = 256;
      }
    }
    if (!valid_tile(thread_k, thread_n) || k % thread_k != 0 || n % thread_n != 0) return TRIRUN_ERR_CONFIG;
    int stages = 0;
    err = grouped ? launch_m<true>(m_blocks, thread_k, thread_n, a_ptr + static_cast<size_t>(row) * k, B, s,
                                   c_ptr + static_cast<size_t>(row) * n, rows, n, k, static_cast<int*>(workspace),
                                   sms, smem_limit, stream, &stages)
                  : launch_m<false>(m_blocks, thread_k, thread_n, a_ptr + static_cast<size_t>(row) * k, B, s,
                                    c_ptr + static_cast<size_t>(row) * n, rows, n, k, static_cast<int*>(workspace),
                                    sms, smem_limit, stream, &stages);
    if (err == cudaErrorInvalidConfiguration) return TRIRUN_ERR_CONFIG;
    if (err != cudaSuccess) {
      if (cuda_error) *cuda_error = err;
      return TRIRUN_ERR_CUDA;
    }
    if (row == 0) {
      used.thread_k = thread_k;
      used.thread_n = thread_n;
      used.m_blocks = m_blocks;
      used.stages = stages;
      used.sms = sms;
      used.max_par = max_par;
      used.threads = kThreads;
    }
  }
  if (config) *config = used;
  return TRIRUN_OK;
}

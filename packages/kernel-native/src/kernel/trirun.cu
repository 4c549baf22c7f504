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
//   read exactly once, with 16-byte copies that bypass L1 (.cg). On sm_90 the
//   small-batch and Hopper kernels use the tensor memory accelerator instead:
//   one producer thread, a ring of stages on mbarriers that runs on across
//   column boundaries (trirun_small_tma_kernel, trirun_hopper_kernel).
// * Dequantization straight into tensor-core fragments: one 32-bit word gives,
//   with a mask and an OR against the exponent of 1024.0 (one `lop3`), two fp16
//   values 1024 + 4^j * code in the two halves of a register; one `hfma2`
//   turns that exactly into code - 1, one `hmul2` applies the group scale.
// * Warps of a block split the tile: n_warps warps side by side along n
//   (64 columns each) and k_warps along k. The k_warps partial results of one
//   output tile are summed through shared memory at the end of each run, so a
//   block has 8 warps to hide latency without a larger output tile.
// * Global reduction: the blocks that share a column take turns (a lock per
//   column in the workspace, acquired in the order in which their parts
//   finish) reading the fp32 partial sum from a workspace slot (in L2), adding
//   their accumulators and writing it back; the last writes the fp16 result to
//   C and resets the lock, so the locks are zero again after every call. A
//   slot is always written before it is read; the general and small-batch
//   kernels still zero theirs after reading, the Hopper kernel leaves stale
//   sums (the slots lie first in the workspace, where no call's locks fall).
//   (The reference kept fp16 partials in C; with long chains on
//   Llama-sized k that rounding alone approaches the 1e-3 error budget.)
//   The small-batch kernel has a second way for short runs (small layers),
//   where the blocks of a column finish together and would queue on the lock:
//   each stores its accumulators in its own slot and counts itself in with an
//   atomic; the last to arrive adds the slots in block order and writes C.
//   The dispatcher picks one per shape (launch_small_stages). A third way
//   (sm_90, TRIRUN_SMALL_CLUSTERS, on by default): the blocks of a column
//   form a thread-block cluster and add up their sums through distributed
//   shared memory, with no L2 round trip at all (SmallOutput::cluster_store /
//   cluster_sum, launch_small_tma): BitNet 2B4T's o / down / q/k/v at m = 1
//   on the H100 5.8 / 8.8 / 6.6 us -> 5.0 / 6.9 / 5.7. Where it fits, the
//   sums are pushed rather than pulled: after one relaxed cluster barrier
//   each block st.async-stores the vectors it does not own into their
//   owner's shared memory, counted on the owner's mbarrier, and leaves once
//   its own share has arrived (the push exchange, trirun_small_tma_kernel;
//   BitNet set at m = 1 / 16 21.2 / 28.0 -> 19.2 / 24.7 us, H100). That end
//   being cheap, clusters may also run a little longer than the striped
//   schedule would (cluster_size_for). And the cheapest reduction is none:
//   where every column fits one block, up to 16 rows run one block per column
//   when that costs at most two more tiles per block (launch_small_tma). The
//   Hopper kernel too sums a split column through last-arriver slots instead
//   of the chain for 33..64 rows of narrow layers (its SLOTS instances).
// * Per-column scales (g = k) are applied once, in fp32, to the accumulators
//   instead of to every dequantized weight.
// * Programmatic dependent launch (sm_90): every kernel here lets the next
//   one in the stream launch as soon as it starts, and the small-batch and
//   Hopper kernels are launched as dependents: their blocks request their
//   first weights, then wait (griddepcontrol.wait) for the grid before before
//   reading A or touching C and the workspace. Back-to-back calls then no
//   longer pay the ~3.5 us between one grid's end and the next one's launch.

#include "trirun.h"

#include <cuda.h>  // CUtensorMap (types only: the driver entry point is looked up at run time)
#include <cudaTypedefs.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#ifdef TRIRUN_DISPATCH_RECORD
#include <vector>
#endif

namespace trirun {

constexpr int kThreads = 256;   // 8 warps per block
constexpr int kMaxPar = 16;     // batch slices per launch

// Experiments only, -DTRIRUN_COPY_ONLY=1 or 2 (timings, wrong results;
// tools/device-probe.sh `ceiling`): the TMA small-batch kernel's consumers
// compute nothing, so a call takes what moving its stages takes, with the
// packed layout's 2-D boxes (1) or with each tile's weights read as one
// contiguous block (2). H200, 70B layers at m = 1: 64 us for either, 96 us
// with the math: the consumers, not the memory side or the layout, set the
// pace (NOTES.md, session 11). -DTRIRUN_COMPUTE_ONLY is the converse: the
// producer copies nothing and the consumers never wait for a stage, so a call
// takes what its consumers' instruction stream takes (shared memory holds
// whatever it held: timings only).
//
// Experiment only, -DTRIRUN_EXP_DECODE_ONCE=1 (timings, wrong results; not yet
// run): the Hopper kernel decodes the weights of a slice's first tile only and
// multiplies every later tile with those fragments, so a run shows what the
// decoding (and the weights' shared-memory reads) cost where the H200 runs at
// its power cap (m >= 128: SM clocks ~1.45 GHz, NOTES.md session 15).
#if defined(TRIRUN_EXP_DECODE_ONCE) && TRIRUN_EXP_DECODE_ONCE
[[maybe_unused]] constexpr bool kExpDecodeOnce = true;
#else
[[maybe_unused]] constexpr bool kExpDecodeOnce = false;
#endif
// Experiment only, -DTRIRUN_EXP_HOPPER_SIDE=1 or 2 (timings, wrong results): the Hopper kernel's memory side
// or compute side alone, as TRIRUN_COPY_ONLY / TRIRUN_COMPUTE_ONLY do for the small-batch kernel. 1: the
// consumers wait for every stage and release it, decoding and multiplying nothing (the slice ends, the slots
// and C as usual). 2: the producer copies nothing and the consumers never wait for a stage (shared memory
// holds whatever it held).
#ifndef TRIRUN_EXP_HOPPER_SIDE
#define TRIRUN_EXP_HOPPER_SIDE 0
#endif
[[maybe_unused]] constexpr bool kExpHopperCopyOnly = TRIRUN_EXP_HOPPER_SIDE == 1;
[[maybe_unused]] constexpr bool kExpHopperComputeOnly = TRIRUN_EXP_HOPPER_SIDE == 2;
// Experiments only (tools/kernel-probe.cu `trace`, built with -DTRIRUN_TRACE):
// thread 0 of each block records %globaltimer and clock64 at a few points of
// the small-batch kernel, for up to four back-to-back launches, and the Hopper
// kernel adds up clock64 spans over all its slices (TRIRUN_TRACE_SUM: the ends
// of its slices, which a point records only for the last one). Compiled out
// otherwise.
#ifdef TRIRUN_TRACE
constexpr int kTraceLaunches = 4, kTraceBlocks = 256, kTracePoints = 6, kTraceSums = 4;
__device__ unsigned long long g_trace[kTraceLaunches][kTraceBlocks][2 * kTracePoints];
__device__ unsigned long long g_trace_sums[kTraceLaunches][kTraceBlocks][kTraceSums];
__device__ unsigned int g_trace_arrivals;
#define TRIRUN_TRACE_CLOCK(var) const long long var = clock64()
#define TRIRUN_TRACE_SUM(slot, value)                                                               \
  do {                                                                                              \
    if (threadIdx.x == 0 && trace_launch < kTraceLaunches && blockIdx.x < kTraceBlocks)             \
      g_trace_sums[trace_launch][blockIdx.x][slot] += static_cast<unsigned long long>(value);       \
  } while (0)
#define TRIRUN_TRACE_AT(point)                                                                      \
  do {                                                                                              \
    if (threadIdx.x == 0 && trace_launch < kTraceLaunches && blockIdx.x < kTraceBlocks) {           \
      unsigned long long gt_;                                                                       \
      asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(gt_));                                       \
      g_trace[trace_launch][blockIdx.x][2 * (point)] = gt_;                                         \
      g_trace[trace_launch][blockIdx.x][2 * (point) + 1] = clock64();                               \
    }                                                                                               \
  } while (0)
#define TRIRUN_TRACE_BEGIN()                                                                        \
  __shared__ unsigned int trace_launch_s;                                                           \
  if (threadIdx.x == 0) trace_launch_s = atomicAdd(&g_trace_arrivals, 1u) / gridDim.x;              \
  __syncthreads();                                                                                  \
  const unsigned int trace_launch = trace_launch_s;                                                 \
  TRIRUN_TRACE_AT(0)
#else
#define TRIRUN_TRACE_CLOCK(var) \
  do {                          \
  } while (0)
#define TRIRUN_TRACE_SUM(slot, value) \
  do {                                \
  } while (0)
#define TRIRUN_TRACE_AT(point) \
  do {                         \
  } while (0)
#define TRIRUN_TRACE_BEGIN() \
  do {                       \
  } while (0)
#endif

__host__ __device__ constexpr int ceil_div(int a, int b) { return (a + b - 1) / b; }

// A clustered small-batch launch (see launch_small_tma): the cluster of
// column `column` has `ranks` blocks, which split its k_tiles tiles in runs
// of ceil(k_tiles / ranks) in rank order; tiles are numbered column by column.
struct TileRun {
  int first, end;  // tiles [first, end)
};
__host__ __device__ constexpr TileRun cluster_run(int column, int rank, int ranks, int k_tiles) {
  const int run = ceil_div(k_tiles, ranks);
  const int start = column * k_tiles;
  return {start + (rank * run < k_tiles ? rank * run : k_tiles),
          start + ((rank + 1) * run < k_tiles ? (rank + 1) * run : k_tiles)};
}

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
__device__ __forceinline__ uint32_t shared_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// Shared-memory loads by 32-bit address (volatile: never moved across the
// mbarrier waits, which are volatile asm too).
__device__ __forceinline__ uint2 lds64(uint32_t addr) {
  uint2 v;
  asm volatile("ld.shared.v2.u32 {%0, %1}, [%2];\n" : "=r"(v.x), "=r"(v.y) : "r"(addr));
  return v;
}
__device__ __forceinline__ int4 lds128(uint32_t addr) {
  int4 v;
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(addr));
  return v;
}

// Thread block clusters (sm_90): the block's rank in its cluster and the
// cluster's size; a barrier over every thread of the cluster (whose arrival
// releases the thread's earlier writes and whose wait acquires the others');
// and a 16-byte load from the shared memory of the cluster's block `rank`
// (distributed shared memory) at the address `local` has in this block.
__device__ __forceinline__ int cluster_rank() {
  uint32_t r;
  asm("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
  return static_cast<int>(r);
}
__device__ __forceinline__ int cluster_blocks() {
  uint32_t r;
  asm("mov.u32 %0, %%cluster_nctarank;\n" : "=r"(r));
  return static_cast<int>(r);
}
// (Not .aligned: the producer warps reach their barriers at other instructions than the consumers.)
__device__ __forceinline__ void cluster_sync() {
  asm volatile("barrier.cluster.arrive.release;\nbarrier.cluster.wait.acquire;\n" ::: "memory");
}
// A cluster barrier without the release fence, which compiles to a MEMBAR.ALL.GPU that waits for the
// thread's outstanding global stores (here the C stores just issued). Only for a barrier that orders
// nothing but completed reads: "every block has read my shared memory, so I may exit" (the reads' values
// were used before arriving). H100, session 31: the clustered exchange's second barrier relaxed took
// 0.3-0.5 us off each clustered call (TriLM o 3072 x 3072 at m = 1 5.2 -> 4.9 us, BitNet o 4.7 -> 4.2).
__device__ __forceinline__ void cluster_sync_relaxed() {
  asm volatile("barrier.cluster.arrive.relaxed;\nbarrier.cluster.wait.acquire;\n" ::: "memory");
}
// The push exchange's accesses: this block's shared memory at a 32-bit address, the same offset
// in the cluster's block `rank`, and a 16-byte store there that completes its bytes on that block's mbarrier.
__device__ __forceinline__ void st_shared_f4(uint32_t addr, float x, float y, float z, float w) {
  asm volatile("st.shared.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "f"(x), "f"(y), "f"(z), "f"(w) : "memory");
}
__device__ __forceinline__ float4 ld_shared_f4(uint32_t addr) {
  float4 v;
  asm volatile("ld.shared.v4.f32 {%0, %1, %2, %3}, [%4];\n"
               : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
               : "r"(addr)
               : "memory");
  return v;
}
__device__ __forceinline__ uint32_t cluster_address(uint32_t local, int rank) {
  uint32_t remote;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(remote) : "r"(local), "r"(rank));
  return remote;
}
__device__ __forceinline__ void st_async_f4(uint32_t remote, float4 v, uint32_t remote_bar) {
  asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.v4.f32 [%0], {%1, %2, %3, %4}, [%5];\n" ::"r"(
                   remote),
               "f"(v.x), "f"(v.y), "f"(v.z), "f"(v.w), "r"(remote_bar)
               : "memory");
}
__device__ __forceinline__ float4 ld_cluster_f4(uint32_t local, int rank) {
  const uint32_t remote = cluster_address(local, rank);
  float4 v;
  asm volatile("ld.shared::cluster.v4.f32 {%0, %1, %2, %3}, [%4];\n"
               : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
               : "r"(remote)
               : "memory");
  return v;
}

// An fp16 value that fp16 holds exactly (normal, at most 11 significant bits),
// in both halves of a 32-bit word, computed by the compiler. The
// dequantization's constants are written with it rather than with
// __float2half2_rn, which is inline asm to the compiler: the PTX converted and
// packed all seven for every packed word. (ptxas folded those conversions
// anyway: the SASS and the timings did not change, NOTES.md, session 11.)
constexpr uint32_t fp16_pair_bits(double v) {
  const uint32_t sign = v < 0 ? 0x8000u : 0u;
  double a = v < 0 ? -v : v;
  int e = 0;
  while (a >= 2.0) a /= 2.0, ++e;
  while (a < 1.0) a *= 2.0, --e;
  const uint32_t h = sign | (static_cast<uint32_t>(e + 15) << 10) | static_cast<uint32_t>((a - 1.0) * 1024.0);
  return h | (h << 16);
}
static_assert(fp16_pair_bits(1024.0) == 0x64006400u && fp16_pair_bits(-257.0) == 0xdc04dc04u &&
                  fp16_pair_bits(0.015625) == 0x24002400u,
              "fp16 encoding");
// The constants of dequant_word (see there): code - 1 from 1024 + 4^j * code.
constexpr uint32_t kSub0 = fp16_pair_bits(1025.0);
constexpr uint32_t kMul1 = fp16_pair_bits(0.25), kAdd1 = fp16_pair_bits(-257.0);
constexpr uint32_t kMul2 = fp16_pair_bits(0.0625), kAdd2 = fp16_pair_bits(-65.0);
constexpr uint32_t kMul3 = fp16_pair_bits(0.015625), kAdd3 = fp16_pair_bits(-17.0);

// Programmatic dependent launch (sm_90; no-ops before). allow_dependents lets
// the grid after this one in the stream, if it was launched as a programmatic
// dependent (this library's matmuls and model ops are, on sm_90), launch now:
// its blocks take SMs as ours leave and issue what does not depend on us
// (weight loads) while our last blocks finish, instead of being launched only
// after our grid has completed (~3-4 us between two calls). Every kernel of this
// library that may be launched as a dependent calls wait_for_prerequisites
// before it reads or writes memory that the grid before it uses: that wait
// returns once the grid before has completed and its writes are visible (at
// once for a plain launch).
__device__ __forceinline__ void allow_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wait_for_prerequisites() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

// The barrier of the threads that take part in a reduction: the whole block,
// or (Hopper kernel) its consumer warpgroups only.
struct BlockSync {
  __device__ void operator()() const { __syncthreads(); }
};

// Column lock of the global reduction: wait until it reads `value`.
template <typename Sync = BlockSync>
__device__ __forceinline__ void lock_wait(const int* lock, int value, Sync sync = {}) {
  if (threadIdx.x == 0) {
    int seen;
    do {
      asm volatile("ld.global.acquire.gpu.b32 %0, [%1];\n" : "=r"(seen) : "l"(lock));
    } while (seen != value);
  }
  sync();
}

// Pass the column to the next block, or reset the lock after the last one.
// The barrier makes every thread's C writes precede thread 0's fence.
template <typename Sync = BlockSync>
__device__ __forceinline__ void lock_release(int* lock, bool last, Sync sync = {}) {
  sync();
  if (threadIdx.x == 0) {
    if (last) {
      asm volatile("st.global.relaxed.gpu.b32 [%0], %1;\n" ::"l"(lock), "r"(0));
    } else {
      asm volatile("fence.acq_rel.gpu;\n" ::);
      asm volatile("red.relaxed.gpu.global.add.s32 [%0], %1;\n" ::"l"(lock), "r"(1));
    }
  }
}

// The multi-stage pipeline both kernels run over a slice of `tiles` tiles:
// `load(i, stage)` issues the cp.async copies of tile i into a stage,
// `compute(i, stage)` consumes it. STAGES - 1 tiles are in flight while one is
// consumed; every step commits one group (possibly empty) so that the
// wait_group counts stay uniform, and one barrier per tile both publishes
// tile i (copied by all threads) and frees the stage read in step i - 1,
// which is the one refilled next.
template <int STAGES, typename Load, typename Compute>
__device__ __forceinline__ void pipeline(int tiles, Load&& load, Compute&& compute) {
#pragma unroll
  for (int st = 0; st < STAGES - 1; ++st) {
    if (st < tiles) load(st, st);
    cp_async_commit();
  }
  for (int i = 0; i < tiles; ++i) {
    cp_async_wait<STAGES - 2>();
    __syncthreads();
    const int next = i + STAGES - 1;
    if (next < tiles) load(next, next % STAGES);
    cp_async_commit();
    compute(i, i % STAGES);
  }
  // Drain before the caller reuses shared memory.
  cp_async_wait<0>();
  __syncthreads();
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
  const half2 sub0 = as_h2(kSub0);
  const half2 mul1 = as_h2(kMul1), add1 = as_h2(kAdd1);
  const half2 mul2 = as_h2(kMul2), add2 = as_h2(kAdd2);
  const half2 mul3 = as_h2(kMul3), add3 = as_h2(kAdd3);
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

// ------------------------------------------- the small-batch kernels' tile
//
// One warp's share of a 16 KB weight tile in both small-batch kernels
// (cp.async and TMA-fed): kKSteps k16 steps of its k_warp, its n_warp's 64
// columns. The kernels say where a stage's data sit, as shared-memory
// addresses: `act_at(ks, pair)` is the lane's ldmatrix address for the warp's
// ks-th k16 step and 8-row blocks 2 pair, 2 pair + 1; `words_at(ks)` loads the
// lane's two packed words of that step; `scales_at()` the lane's 16-byte
// vector of the warp's group scale row (GROUPED only).
template <int MB8, int kKSteps, bool GROUPED, typename ActAt, typename WordsAt, typename ScalesAt>
__device__ __forceinline__ void small_warp_tile(float (&acc)[MB8][4][4], ActAt act_at, WordsAt words_at,
                                                ScalesAt scales_at) {
  float tmp[MB8][4][4];
  if constexpr (GROUPED) {
#pragma unroll
    for (int mb = 0; mb < MB8; ++mb)
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) tmp[mb][j][e] = 0.0f;
  }
#pragma unroll
  for (int ks = 0; ks < kKSteps; ++ks) {
    // Activations as the n8 operand: rows of A are the columns of A^T.
    // ldmatrix (not transposed) gives lane l row l / 4, k pair t.
    uint32_t act[MB8][2];
#pragma unroll
    for (int pair = 0; pair < (MB8 + 1) / 2; ++pair) {
      // One ldmatrix per two 8-row blocks (x4), or x2 for one.
      const uint32_t addr = act_at(ks, pair);
      if constexpr (MB8 >= 2) {
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(act[2 * pair][0]), "=r"(act[2 * pair][1]), "=r"(act[2 * pair + 1][0]),
                       "=r"(act[2 * pair + 1][1])
                     : "r"(addr));
      } else {
        asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
                     : "=r"(act[0][0]), "=r"(act[0][1])
                     : "r"(addr));
      }
    }
    const uint2 words = words_at(ks);
#pragma unroll
    for (int w = 0; w < 2; ++w) {
      uint32_t q[4][2];
      dequant_word(w == 0 ? words.x : words.y, q);
#pragma unroll
      for (int tl = 0; tl < 2; ++tl) {
        // The 16x16 tile of W^T: rows = columns 16 j .. 16 j + 15.
        const uint32_t wa[4] = {q[2 * tl][0], q[2 * tl + 1][0], q[2 * tl][1], q[2 * tl + 1][1]};
        const int j = 2 * w + tl;
#pragma unroll
        for (int mb = 0; mb < MB8; ++mb) {
          if constexpr (GROUPED)
            mma_16816(wa, act[mb][0], act[mb][1], tmp[mb][j]);
          else
            mma_16816(wa, act[mb][0], act[mb][1], acc[mb][j]);
        }
      }
    }
  }
  if constexpr (GROUPED) {
    // The scale row of this warp's group.
    const int4 sv = scales_at();
    const half* s8 = reinterpret_cast<const half*>(&sv);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      // Accumulator rows (output columns) g and g + 8 of tile j are the
      // lane's n8 blocks 2 j and 2 j + 1.
      const float s_lo = __half2float(s8[2 * j]);
      const float s_hi = __half2float(s8[2 * j + 1]);
#pragma unroll
      for (int mb = 0; mb < MB8; ++mb) {
        acc[mb][j][0] = fmaf(tmp[mb][j][0], s_lo, acc[mb][j][0]);
        acc[mb][j][1] = fmaf(tmp[mb][j][1], s_lo, acc[mb][j][1]);
        acc[mb][j][2] = fmaf(tmp[mb][j][2], s_hi, acc[mb][j][2]);
        acc[mb][j][3] = fmaf(tmp[mb][j][3], s_hi, acc[mb][j][3]);
      }
    }
  }
}

// ------------------------------------------- the small-batch kernels' output
//
// What both small-batch kernels (cp.async and TMA-fed) do with a finished
// run of one column: per-column scales, and the reduction over the blocks
// that share the column, either a lock chain or last-arriver slots (see the
// end of trirun_small_kernel). Sync is the barrier of the threads that take
// part: the whole block, or the TMA kernel's consumer warpgroups.
struct SmallPending {
  int column = 0, first = 0, last = 0, slices = 0;
};

template <int MB8, int N_WARPS, typename Sync>
struct SmallOutput {
  static constexpr int kThreadN = N_WARPS * 64;
  // Slots of the global reduction: a block shares at most two columns (the
  // one its run starts in and the one it ends in; those between are whole),
  // so slot 2 b + 0 is block b's first column and 2 b + 1 its last.
  // Vector-major float4 layout: accumulator vector v (= 4 mb + j) of lane l
  // in n_warp w sits at v * kSlotLanes + 32 w + l, so one warp's store or load
  // of a vector touches 512 contiguous bytes (a lane-major layout, 8 vectors
  // per lane, put every lane in a line of its own: at m = 16 the last
  // arriver's sum took up to 6.6 us on a 2560 x 2560 layer, H200 trace of
  // session 18). The reducer reads what the same lane of the other blocks
  // wrote.
  static constexpr int kSlotLanes = N_WARPS * 32;
  static constexpr int kSlotFloats = N_WARPS * 32 * MB8 * 16;
  static_assert(MB8 == 1 || MB8 == 2 || MB8 == 4, "8, 16 or 32 rows per batch slice");
  // Two slots per block must fit the workspace's 64 x 256 fp32 per block
  // (slot_bytes): the 32-row kernel has no 128 x 512 tile.
  static_assert(2 * kSlotFloats <= 64 * 256, "slots exceed the workspace");

  half* c_half;
  int* locks;
  float* partial;
  float* slots;
  int prob_m, prob_n, iters, k_tiles;
  int lane, n_warp, k_warp, g, t;  // g, t: the mma fragments' lane / 4 and lane % 4
  Sync sync;

  __device__ __forceinline__ float4* slot_of(int b, int column) const {
    const int which = iters * b >= column * k_tiles ? 0 : 1;
    return reinterpret_cast<float4*>(slots + static_cast<size_t>(2 * b + which) * kSlotFloats) + n_warp * 32 + lane;
  }
  // The lane's accumulator vector (mb, j) in a slot.
  static __device__ __forceinline__ int slot_vec(int mb, int j) { return (mb * 4 + j) * kSlotLanes; }
  // Visits the lane's outputs that exist in C: accumulator element 2h + e of
  // tile j in 8-row block mb is output row 8 mb + 2 t + e, output column
  // 16 j + g + 8 h of this warp's 64 columns; idx is its offset in C (and in
  // the chain's fp32 partials, which have C's layout).
  template <typename Visit>
  __device__ __forceinline__ void for_each_output(int column, Visit&& visit) const {
    const int n0 = column * kThreadN + n_warp * 64;
#pragma unroll
    for (int mb = 0; mb < MB8; ++mb)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int row = mb * 8 + 2 * t + e;
        if (row < prob_m) {
#pragma unroll
          for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int h = 0; h < 2; ++h)
              visit(mb, e, j, h, static_cast<size_t>(row) * prob_n + n0 + 16 * j + g + 8 * h);
        }
      }
  }
  __device__ __forceinline__ void write_c(const float (&v)[MB8][4][4], int column) const {
    for_each_output(column, [&](int mb, int e, int j, int h, size_t idx) {
      c_half[idx] = __float2half_rn(v[mb][j][2 * h + e]);
    });
  }

  // Per-column scales (g = k), applied once to the accumulators by k_warp 0.
  // They are permuted in 32-entry chunks: columns 16 j' + 8 h + g of a chunk
  // sit at 8 (g / 2) + (g % 2) + 4 j' + 2 h.
  __device__ __forceinline__ void scale_columns(float (&acc)[MB8][4][4], const int4* S, int n_tile) const {
    if (k_warp != 0) return;
    const half* s_cols = reinterpret_cast<const half*>(S) + n_tile * kThreadN + n_warp * 64;
#pragma unroll
    for (int chunk = 0; chunk < 2; ++chunk) {
      const int4 sv = __ldg(reinterpret_cast<const int4*>(s_cols + 32 * chunk + 8 * (g / 2)));
      const uint32_t words[4] = {static_cast<uint32_t>(sv.x), static_cast<uint32_t>(sv.y),
                                 static_cast<uint32_t>(sv.z), static_cast<uint32_t>(sv.w)};
      // Half (g % 2) of word 2 jl + h, selected without a run-time array index.
      auto pick = [&](uint32_t w) {
        return __half2float(__ushort_as_half(static_cast<unsigned short>((g & 1) ? (w >> 16) : (w & 0xffffu))));
      };
#pragma unroll
      for (int jl = 0; jl < 2; ++jl) {
        const float s_lo = pick(words[2 * jl]);
        const float s_hi = pick(words[2 * jl + 1]);
#pragma unroll
        for (int mb = 0; mb < MB8; ++mb) {
          acc[mb][2 * chunk + jl][0] *= s_lo;
          acc[mb][2 * chunk + jl][1] *= s_lo;
          acc[mb][2 * chunk + jl][2] *= s_hi;
          acc[mb][2 * chunk + jl][3] *= s_hi;
        }
      }
    }
  }

  // Lock chain: the blocks of the column add into the fp32 partial sums in
  // turn (slice_idx order); the last writes C.
  __device__ __forceinline__ void chain(const float (&acc)[MB8][4][4], int n_tile, int slice_idx,
                                        int slice_count) const {
    int* lock = locks + n_tile;
    if (slice_count > 1) lock_wait(lock, slice_idx, sync);
    if (k_warp == 0) {
      const bool read_partial = slice_count > 1 && slice_idx > 0;
      const bool last = slice_idx == slice_count - 1;
      // The previous blocks' partial sums, all loaded before the first store
      // (a store between two loads the compiler cannot prove apart costs a
      // full L2 round trip per element: ~15% of the time at m = 16).
      float prev[MB8][2][4][2] = {};
      if (read_partial)
        for_each_output(n_tile, [&](int mb, int e, int j, int h, size_t idx) { prev[mb][e][j][h] = __ldcg(&partial[idx]); });
      for_each_output(n_tile, [&](int mb, int e, int j, int h, size_t idx) {
        const float v = acc[mb][j][2 * h + e] + prev[mb][e][j][h];
        if (!last) {
          __stcg(&partial[idx], v);
        } else {
          c_half[idx] = __float2half_rn(v);
          // Leave the workspace all zero, as every call must: its locks and
          // partials may overlap differently next time.
          if (read_partial) __stcg(&partial[idx], 0.0f);
        }
      });
    }
    if (slice_count > 1) lock_release(lock, slice_idx == slice_count - 1, sync);
  }

  // Last-arriver slots, first half: a shared column's accumulators go to this
  // block's slot and thread 0 counts the block in (its answer is returned,
  // 0 elsewhere); a column of its own is written to C at once.
  __device__ __forceinline__ int arrive(const float (&acc)[MB8][4][4], int n_tile, bool shared_column) const {
    if (shared_column) {
      if (k_warp == 0) {
        float4* mine = slot_of(blockIdx.x, n_tile);
#pragma unroll
        for (int mb = 0; mb < MB8; ++mb) {
          if (mb * 8 + 2 * t >= prob_m) continue;  // only rows of C that exist
#pragma unroll
          for (int j = 0; j < 4; ++j)
            __stcg(&mine[slot_vec(mb, j)], make_float4(acc[mb][j][0], acc[mb][j][1], acc[mb][j][2], acc[mb][j][3]));
        }
      }
      // Every thread's slot stores precede thread 0's release (barrier, then fence).
      sync();
    } else if (k_warp == 0) {
      write_c(acc, n_tile);
    }
    int arrived = 0;
    if (shared_column && threadIdx.x == 0) {
      asm volatile("fence.acq_rel.gpu;\n" ::);
      asm volatile("atom.add.relaxed.gpu.global.s32 %0, [%1], 1;\n" : "=r"(arrived) : "l"(locks + n_tile));
    }
    return arrived;
  }

  // Second half: thread 0 holds the atomic's answer; the block learns through
  // `last_arrival` (shared) whether it arrived last, and if so sums the slots
  // in block order (zeroing them: the workspace is left all zero) and writes C.
  __device__ __forceinline__ void resolve(const SmallPending& p, int arrived, int& last_arrival) const {
    if (threadIdx.x == 0) {
      const bool last = arrived == p.slices - 1;
      if (last) {
        asm volatile("fence.acq_rel.gpu;\n" ::);
        asm volatile("st.global.relaxed.gpu.b32 [%0], %1;\n" ::"l"(locks + p.column), "r"(0));
      }
      last_arrival = last;
    }
    sync();
    if (last_arrival && k_warp == 0) {
      // Every load first, then the stores that zero the slots: a store between
      // two loads that the compiler cannot prove apart makes each load wait
      // for the one before, one L2 round trip per float4.
      float sum[MB8][4][4] = {};
#pragma unroll 4
      for (int b = p.first; b <= p.last; ++b) {
        const float4* theirs = slot_of(b, p.column);
#pragma unroll
        for (int mb = 0; mb < MB8; ++mb) {
          if (mb * 8 + 2 * t >= prob_m) continue;  // rows that were not stored
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            const float4 v = __ldcg(&theirs[slot_vec(mb, j)]);
            sum[mb][j][0] += v.x;
            sum[mb][j][1] += v.y;
            sum[mb][j][2] += v.z;
            sum[mb][j][3] += v.w;
          }
        }
      }
      for (int b = p.first; b <= p.last; ++b) {
        float4* theirs = slot_of(b, p.column);
#pragma unroll
        for (int mb = 0; mb < MB8; ++mb) {
          if (mb * 8 + 2 * t >= prob_m) continue;
#pragma unroll
          for (int j = 0; j < 4; ++j) __stcg(&theirs[slot_vec(mb, j)], make_float4(0.0f, 0.0f, 0.0f, 0.0f));
        }
      }
      write_c(sum, p.column);
    }
  }

  // Cluster reduction (the TMA kernel's clustered launches): the `ranks`
  // blocks of a cluster hold the partial sums of one column. Each stores its
  // accumulators in its own shared memory (`exchange`, vector-major like the
  // slots); after a cluster barrier, block r adds up the vectors v with
  // v % ranks == r over all blocks, in rank order, by distributed shared
  // memory loads, and writes them to C; a second barrier (the kernel's) keeps
  // every block's shared memory until all have read it. Against the slots,
  // that is one barrier and one on-chip round trip instead of a fence, an L2
  // atomic and the last arriver's L2 loads.
  __device__ __forceinline__ void cluster_store(const float (&acc)[MB8][4][4], float4* exchange) const {
    if (k_warp != 0) return;
#pragma unroll
    for (int mb = 0; mb < MB8; ++mb) {
      if (mb * 8 + 2 * t >= prob_m) continue;  // only rows of C that exist
#pragma unroll
      for (int j = 0; j < 4; ++j)
        exchange[slot_vec(mb, j) + n_warp * 32 + lane] =
            make_float4(acc[mb][j][0], acc[mb][j][1], acc[mb][j][2], acc[mb][j][3]);
    }
  }
  __device__ __forceinline__ void cluster_sum(uint32_t exchange, int column, int rank, int ranks) const {
    if (k_warp != 0) return;
    float sum[MB8][4][4] = {};
#pragma unroll
    for (int mb = 0; mb < MB8; ++mb) {
      if (mb * 8 + 2 * t >= prob_m) continue;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        if ((mb * 4 + j) % ranks != rank) continue;
        const uint32_t at = exchange + static_cast<uint32_t>(slot_vec(mb, j) + n_warp * 32 + lane) * 16;
        for (int r = 0; r < ranks; ++r) {
          const float4 v = ld_cluster_f4(at, r);
          sum[mb][j][0] += v.x;
          sum[mb][j][1] += v.y;
          sum[mb][j][2] += v.z;
          sum[mb][j][3] += v.w;
        }
      }
    }
    for_each_output(column, [&](int mb, int e, int j, int h, size_t idx) {
      if ((mb * 4 + j) % ranks == rank) c_half[idx] = __float2half_rn(sum[mb][j][2 * h + e]);
    });
  }
};

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
                  int4* __restrict__ C, int prob_m, int prob_n, int prob_k, int* locks, float* __restrict__ partial) {
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
  allow_dependents();
  wait_for_prerequisites();  // a plain launch today; cheap insurance if it ever is a dependent
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

    pipeline<STAGES>(slice_tiles, load_tile, [&](int /* tile */, int stage) {
      const int4* sh = smem + stage * kStageVecs;
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
    });

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
      const bool last = slice_idx == slice_count - 1;
      // fp32 partial sums of a shared column live in a slot of the workspace
      // named after the column's last block (unique among shared columns:
      // a block can end only one column that it does not hold whole).
      float* slot = partial + static_cast<size_t>(last_block) * (64 * kThreadN) + n_warp * 64 + 2 * (lane % 4);
#pragma unroll
      for (int mb = 0; mb < M_BLOCKS; ++mb) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          // Accumulator layout of m16n8: elements 0,1 at row lane / 4, columns
          // 2 (lane % 4) + {0, 1}; elements 2,3 eight rows further down.
          const int r = mb * 16 + lane / 4 + 8 * h;
          if (r < rows) {
            half* c_row = c_base + static_cast<size_t>(r) * c_row_halves + 2 * (lane % 4);
            // The row's 8 partials loaded before any store: a store between
            // two loads the compiler cannot prove apart serialises them on
            // full L2 round trips.
            float2 prev[8];
#pragma unroll
            for (int f = 0; f < 8; ++f)
              prev[f] = read_partial ? __ldcg(reinterpret_cast<const float2*>(slot + r * kThreadN + 8 * f))
                                     : make_float2(0.0f, 0.0f);
#pragma unroll
            for (int f = 0; f < 8; ++f) {
              const float x = acc[mb][f][2 * h] + prev[f].x, y = acc[mb][f][2 * h + 1] + prev[f].y;
              float2* p = reinterpret_cast<float2*>(slot + r * kThreadN + 8 * f);
              if (!last) {
                __stcg(p, make_float2(x, y));
              } else {
                __stcg(reinterpret_cast<uint32_t*>(c_row + 8 * f), as_u32(__floats2half2_rn(x, y)));
                if (read_partial) __stcg(p, make_float2(0.0f, 0.0f));  // leave the workspace zero
              }
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

// ---------------------------------------------------- the small-batch kernel
//
// For m <= 32 the tensor cores idle most of the time and what limits the
// kernel is the number of instructions issued per weight byte (and enough
// bytes in flight to cover DRAM latency). Three changes from the general
// kernel cut the instructions per weight by more than half:
// * Swapped operands: it computes C^T = W^T A^T. The two n8-block B fragments
//   that one packed word yields for a 16x16 tile are exactly the A fragment
//   of that tile of W^T (rows = 16 output columns), and the activations become
//   the n8 operand (8 rows of A). One m16n8k16 then covers 16 output columns
//   for up to 8 rows of A: half the mma instructions of the general kernel.
// * Group scales in fp32: a warp accumulates its part of one group into a
//   temporary and folds it in with one FFMA per accumulator, instead of an
//   hmul2 per dequantized pair (4 FFMA per 8 k16 steps instead of 16 hmul2).
// * Wide tiles (128 x 512 or 256 x 256, 16 KB of weights) and all 8 warps on
//   one tile, so each __syncthreads and address computation is spread over
//   four times the bytes, and a 4-stage pipeline keeps 48 KB in flight per SM.
// Blocks that share a column combine fp32 partials through per-block slots
// of the workspace; the last to arrive adds them in block order, so the
// result is deterministic and no block waits for another (see the end of
// the kernel).
//
//   MB8:     8-row blocks of A (1 for m <= 8, 2 for m <= 16, 4 for m <= 32;
//            one ldmatrix.x4 feeds two of them)
//   N_WARPS: warps side by side along n (64 columns each); the other
//            8 / N_WARPS warps split the tile's k, one group (128) each, so a
//            tile is always 16 KB of weights: 128 x 512, 256 x 256 or 512 x 128.
//            The dispatcher picks the narrowest tile that still gives every SM
//            about one column: a column is then shared by at most two or
//            three blocks, which keeps the reduction chain short.
template <int MB8, int N_WARPS, int STAGES, int THREADS, bool GROUPED, bool CHAINED>
__global__ void __launch_bounds__(THREADS, 1)
    trirun_small_kernel(const int4* __restrict__ A, const int4* __restrict__ B, const int4* __restrict__ S,
                        int4* __restrict__ C, int prob_m, int prob_n, int prob_k, int* locks,
                        float* __restrict__ partial, float* __restrict__ slots) {
  constexpr int kWarps = THREADS / 32;
  constexpr int kKWarps = kWarps / N_WARPS;
  constexpr int kKSteps = 8;  // k16 steps per warp per tile: one group
  constexpr int K_BLOCKS = kKSteps * kKWarps;
  static_assert(N_WARPS * kKWarps == kWarps, "warps must tile the block");
  constexpr int kThreadK = K_BLOCKS * 16;
  constexpr int kThreadN = N_WARPS * 64;
  constexpr int kRows = MB8 * 8;
  constexpr int kARowVecs = kThreadK / 8;
  constexpr int kAStageVecs = kRows * kARowVecs;
  constexpr int kBRowVecs = kThreadN / 4;  // one k16 row of the tile: kThreadN words
  constexpr int kBStageVecs = K_BLOCKS * kBRowVecs;
  constexpr int kSRows = GROUPED ? kKWarps : 0;
  constexpr int kSRowVecs = kThreadN / 8;
  constexpr int kSStageVecs = kSRows * kSRowVecs;
  constexpr int kStageVecs = kAStageVecs + kBStageVecs + kSStageVecs;
  static_assert(kBStageVecs % THREADS == 0, "B copies must spread evenly");
  extern __shared__ int4 smem[];

  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int n_warp = warp % N_WARPS;
  const int k_warp = warp / N_WARPS;
  const int g = lane / 4;  // "group id" of the mma fragment layouts
  const int t = lane % 4;
  TRIRUN_TRACE_BEGIN();
  allow_dependents();

  // The last k tile of a column may be partial (k is a multiple of 128, not
  // of the tile): warps past the end of k sit that tile out.
  const int k_tiles = ceil_div(prob_k, kThreadK);
  const int k_groups = prob_k / 128;
  const int n_tiles = prob_n / kThreadN;
  const int total_tiles = k_tiles * n_tiles;
  const int iters = ceil_div(total_tiles, static_cast<int>(gridDim.x));
  const int first_tile = iters * blockIdx.x;
  const int end_tile = min(first_tile + iters, total_tiles);
  const int a_row_vecs = prob_k / 8;
  const int b_row_vecs = prob_n / 4;
  const int s_row_vecs = prob_n / 8;

  // Programmatic dependent launch (sm_90, on streams other than the legacy
  // default one): this grid may start while the kernel before it (a norm,
  // attention) still runs; the model ops let it launch as soon as they start.
  // Weights do not depend on that kernel: ask L2 for this block's first tiles
  // now, then wait for it (its results visible) before touching A, C or the
  // workspace. The wait returns at once when the grid was launched normally.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (threadIdx.x < 32 && first_tile < end_tile) {
    const int n_tile = first_tile / k_tiles;
    const int k_tile0 = first_tile % k_tiles;
    const int tiles = min(min(end_tile - first_tile, k_tiles - k_tile0), STAGES - 1);
    const int rows = min(tiles * K_BLOCKS, prob_k / 16 - k_tile0 * K_BLOCKS);
    for (int r = threadIdx.x; r < rows; r += 32) {
      const int4* row = B + static_cast<size_t>(k_tile0 * K_BLOCKS + r) * b_row_vecs + n_tile * kBRowVecs;
      asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(row), "r"(kBRowVecs * 16) : "memory");
    }
  }
#endif
  wait_for_prerequisites();

  // Two ways to combine the blocks that share a column. When a column is
  // split over three or more blocks (short runs: small layers, long k), they
  // finish it at about the same time, and the last-arriver reduction below
  // serves them in parallel. With longer runs a column is shared by two or
  // three blocks that reach it at different times (the one whose run starts
  // in it, early; the one whose run ends in it, late): the lock chain then
  // never waits and moves fewer bytes, and measured faster (NOTES.md).
  // The dispatcher picks CHAINED (a template parameter: with both paths in
  // one kernel the main loop compiled ~10% slower on large layers).
  constexpr bool chained = CHAINED;
  const SmallOutput<MB8, N_WARPS, BlockSync> out{reinterpret_cast<half*>(C), locks, partial, slots, prob_m, prob_n,
                                                  iters, k_tiles, lane, n_warp, k_warp, g, t, {}};
  __shared__ int last_arrival;
  SmallPending pending;
  int pending_arrived = 0;

  for (int tile = first_tile; tile < end_tile;) {
    const int n_tile = tile / k_tiles;
    const int k_tile0 = tile % k_tiles;
    const int slice_tiles = min(end_tile - tile, k_tiles - k_tile0);
    const int first_block = (n_tile * k_tiles) / iters;
    const int last_block = ((n_tile + 1) * k_tiles - 1) / iters;
    const int slice_count = last_block - first_block + 1;
    [[maybe_unused]] const int slice_idx = last_block - static_cast<int>(blockIdx.x);

    // Copy sources of this thread for the slice's first tile; each tile
    // advances them by a constant, so a copy costs its instruction and one
    // 64-bit add (the per-copy row/column arithmetic and bounds checks of a
    // general loop were ~100 of a warp's ~490 instructions per tile, most on
    // the integer pipe that dequantization also needs). The row and column of
    // copy j do not depend on the tile: THREADS is a multiple of the row
    // lengths in 16-byte vectors.
    static_assert(THREADS % kBRowVecs == 0 && THREADS % kARowVecs == 0, "copies keep their row and column");
    constexpr int kBCopies = kBStageVecs / THREADS;
    constexpr int kACopies = ceil_div(kAStageVecs, THREADS);
    constexpr int kBRowsPerPass = THREADS / kBRowVecs;
    constexpr int kARowsPerPass = THREADS / kARowVecs;
    const int b_row0 = threadIdx.x / kBRowVecs;
    const int4* b_first = B + static_cast<size_t>(k_tile0 * K_BLOCKS + b_row0) * b_row_vecs + n_tile * kBRowVecs +
                          threadIdx.x % kBRowVecs;
    const size_t b_pass = static_cast<size_t>(kBRowsPerPass) * b_row_vecs;  // copy j -> j + 1
    const size_t b_tile_step = static_cast<size_t>(K_BLOCKS) * b_row_vecs;
    const int a_row0 = threadIdx.x / kARowVecs;
    const int a_col = threadIdx.x % kARowVecs;
    const int4* a_first = A + static_cast<size_t>(a_row0) * a_row_vecs + k_tile0 * kARowVecs + a_col;
    const int s_row = threadIdx.x / kSRowVecs;
    const int4* s_first = S + static_cast<size_t>(k_tile0 * kKWarps + s_row) * s_row_vecs + n_tile * kSRowVecs +
                          threadIdx.x % kSRowVecs;

    auto load_tile = [&](int i, int stage) {
      int4* sh = smem + stage * kStageVecs;
      // Groups of this tile that lie inside k (all of them but in the last tile).
      const int groups = min(kKWarps, k_groups - (k_tile0 + i) * kKWarps);
      const bool whole = groups == kKWarps;
      // A: rows past m are not copied (nor zero-filled): whatever their shared
      // memory holds only reaches the same rows of the products, which are
      // never stored.
      const int4* a = a_first + i * kARowVecs;
#pragma unroll
      for (int j = 0; j < kACopies; ++j) {
        const int r = j * kARowsPerPass + a_row0;
        if ((j + 1) * THREADS <= kAStageVecs || j * THREADS + static_cast<int>(threadIdx.x) < kAStageVecs) {
          if (r < prob_m && (whole || a_col / 16 < groups))
            cp_async16(&sh[r * kARowVecs + (a_col ^ (r % 8))], a + static_cast<size_t>(j * kARowsPerPass) * a_row_vecs);
        }
      }
      const int4* b = b_first + i * b_tile_step;
#pragma unroll
      for (int j = 0; j < kBCopies; ++j) {
        const int r = j * kBRowsPerPass + b_row0;  // k16 row of the tile
        if (whole || r / kKSteps < groups) cp_async16(&sh[kAStageVecs + j * THREADS + threadIdx.x], b + j * b_pass);
      }
      if constexpr (GROUPED) {
        if (threadIdx.x < kSStageVecs && (whole || s_row < groups))
          cp_async16(&sh[kAStageVecs + kBStageVecs + threadIdx.x], s_first + static_cast<size_t>(i) * kKWarps * s_row_vecs);
      }
    };

    float acc[MB8][4][4];
#pragma unroll
    for (int mb = 0; mb < MB8; ++mb)
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[mb][j][e] = 0.0f;

    pipeline<STAGES>(slice_tiles, load_tile, [&](int i, int stage) {
      if (i == 0 && tile == first_tile) TRIRUN_TRACE_AT(1);
      const int4* sh = smem + stage * kStageVecs;
      const uint32_t* sh_b = reinterpret_cast<const uint32_t*>(sh + kAStageVecs);

      // Warp-uniform: in the last tile of a column, warps past k have nothing.
      if ((k_tile0 + i) * kKWarps + k_warp < k_groups) {
        // Row r of A (XOR-swizzled rows of kARowVecs vectors): the lane's
        // ldmatrix row and k pair of k16 step kb.
        const int4* sh_s = sh + kAStageVecs + kBStageVecs;
        small_warp_tile<MB8, kKSteps, GROUPED>(
            acc,
            [&](int ks, int pair) {
              const int r = pair * 16 + (MB8 >= 2 ? (lane / 16) * 8 : 0) + (lane % 8);
              const int c = (k_warp * kKSteps + ks) * 2 + (lane / 8) % 2;
              return shared_address(&sh[r * kARowVecs + (c ^ (r % 8))]);
            },
            [&](int ks) {
              return *reinterpret_cast<const uint2*>(&sh_b[(k_warp * kKSteps + ks) * kThreadN + n_warp * 64 + lane * 2]);
            },
            [&] { return sh_s[k_warp * (kThreadN / 8) + n_warp * 8 + lane / 4]; });
      }
    });

    TRIRUN_TRACE_AT(2);
    if constexpr (kKWarps > 1) {
      float* red = reinterpret_cast<float*>(smem);
      constexpr int kPerLane = MB8 * 16;
      if (k_warp > 0) {
        float* dstp = red + (((k_warp - 1) * N_WARPS + n_warp) * 32) * kPerLane;
#pragma unroll
        for (int mb = 0; mb < MB8; ++mb)
#pragma unroll
          for (int j = 0; j < 4; ++j)
            *reinterpret_cast<float4*>(&dstp[((mb * 4 + j) * 32 + lane) * 4]) =
                make_float4(acc[mb][j][0], acc[mb][j][1], acc[mb][j][2], acc[mb][j][3]);
      }
      __syncthreads();
      if (k_warp == 0) {
#pragma unroll
        for (int kw = 1; kw < kKWarps; ++kw) {
          const float* srcp = red + (((kw - 1) * N_WARPS + n_warp) * 32) * kPerLane;
#pragma unroll
          for (int mb = 0; mb < MB8; ++mb)
#pragma unroll
            for (int j = 0; j < 4; ++j) {
              const float4 v = *reinterpret_cast<const float4*>(&srcp[((mb * 4 + j) * 32 + lane) * 4]);
              acc[mb][j][0] += v.x;
              acc[mb][j][1] += v.y;
              acc[mb][j][2] += v.z;
              acc[mb][j][3] += v.w;
            }
        }
      }
      __syncthreads();
    }

    if constexpr (!GROUPED) out.scale_columns(acc, S, n_tile);

    if constexpr (chained) {
      // Global reduction over the blocks of this column, in fp32.
      out.chain(acc, n_tile, slice_idx, slice_count);
      __syncthreads();
      tile += slice_tiles;
      continue;
    } else {
      // Global reduction over the blocks of this column, in fp32, without a
      // chain: every block stores its accumulators in its own slot of the
      // workspace and counts itself in with one atomic; the block that arrives
      // last adds all the slots in block order (so the sum does not depend on
      // who is last) and writes C. Blocks with short runs (small layers) finish
      // a column at about the same time: a lock chain served them one L2 round
      // trip after the other, the fixed cost that dominated small layers.
      // The atomic's answer is only needed to know who is last, so a block does
      // not wait for it: it goes on with its next column and looks at the answer
      // when that one is done (or after its last column).
      const bool shared_column = slice_count > 1;
      const int arrived = out.arrive(acc, n_tile, shared_column);
      TRIRUN_TRACE_AT(3);
      if (pending.slices > 0) out.resolve(pending, pending_arrived, last_arrival);
      pending = shared_column ? SmallPending{n_tile, first_block, last_block, slice_count} : SmallPending{};
      pending_arrived = arrived;
      // The next column's accumulation reuses shared memory.
      __syncthreads();
      tile += slice_tiles;
    }
  }
  TRIRUN_TRACE_AT(4);
  if constexpr (!chained) {
    if (pending.slices > 0) out.resolve(pending, pending_arrived, last_arrival);
  }
  TRIRUN_TRACE_AT(5);
}

// ------------------------------------------------------- the Hopper kernel
//
// For larger batches (m >= 33) on sm_90 the tensor cores are the limit, and
// `mma.sync` reaches only part of Hopper's rate: this kernel issues warpgroup
// MMAs (`wgmma`, sm_90a) instead. It keeps the small-batch kernel's swapped
// operands: the product is computed as C^T = W^T x A^T, so
// * the dequantized weights are wgmma's A operand, taken straight from
//   registers: a packed word decodes into exactly the A fragment of 16 output
//   columns x 16 k (the m16n8k16 B-fragment pairs of two n8 blocks), so the
//   weights never pass through shared memory as fp16, and each one is
//   decoded once per N_ACT rows of activations;
// * the activations are wgmma's B operand (N = N_ACT rows of A, 32 to 256),
//   brought into shared memory by the tensor memory accelerator (TMA) in the
//   K-major layout with the 128-byte swizzle: two 64-wide k atoms per tile,
//   each [row][128 bytes] with 16-byte chunk c of row r at chunk c ^ (r % 8),
//   which is what wgmma reads without bank conflicts. Rows past m come back
//   as zeros (the tensor map's bounds).
// Warp specialisation: one producer thread issues all copies of a stage (four
// tensor copies on an mbarrier) and runs up to STAGES tiles ahead, across
// slice boundaries; the two consumer warpgroups never wait on each other
// inside the main loop, only on the stage's "full" barrier, and release it
// through its "empty" barrier. Each owns 64 of the tile's 128 weight columns
// (its M = 64), each warp 16 of them: per 128-deep k tile it decodes 8 A
// fragments, issues 8 wgmmas and waits for them, while the other
// warpgroup's wgmmas keep the tensor cores busy. (Measured, H100: the first
// version with all 256 threads issuing cp.async copies and a block barrier
// per tile ran at 240 TFLOPS in an unswizzled layout, 310-330 swizzled.)
// Partitioning (striped runs of tiles over
// (k, n, row slice)), the lock chain and the fp32 workspace slots are the
// general kernel's; a slot holds a block's accumulators in register order,
// so its loads and stores are coalesced whatever the fragment layout.
// Scales are applied to the decoded weights in fp16, which is exact: each
// weight is (code - 1) * s with code - 1 in {-1, 0, 1, 2}.

// The decode by subnormals (the default where the scales allow it): the codes as fp16 subnormals. A code
// masked in place at bits 4..5 of a half (no exponent ORed in) is the fp16 value code x 2^-20, at bits
// 8..9 code x 2^-16. One fma with the scale times 2^20 (or 2^16) and -s gives code x s - s = (code - 1) x
// s, exact: the product is exact, and the sum is the exact weight, which fp16 holds. So a register costs a
// mask and an fma where the decode above costs a mask, a subtraction (or fma) and a multiply, and two
// shifts per word serve all four registers. s x 2^20 fits fp16 only while |s| < 2^-4, so a warp takes this
// path for a tile only if all its lanes' scales do (else the decode above, bit for bit the same weights).
// Fp16 arithmetic keeps subnormals (no flush to zero for f16 instructions). Measured in session 29
// (reports/2026-12-06-h200-h100-session29.txt, TriRun only, against the decode above): H100 70B at m = 64
// 207.0-207.4 -> 204.2-204.9 us, at m = 128 300.7-301.9 -> 290.7-291.6, 7B at m = 32 66.7-68.1 ->
// 64.5-65.1; the H200 alike. Scales of ~0.01-0.03 (Llama-like weights) fit.
struct SubnormalScales {
  half2 unit4, unit8, minus;  // s x 2^20, s x 2^16, -s
};
__device__ __forceinline__ bool subnormal_scales_fit(half2 s2) {
  const uint32_t bits = as_u32(s2);
  return (bits & 0x7fffu) < 0x2c00u && ((bits >> 16) & 0x7fffu) < 0x2c00u;  // both |s| < 2^-4 (and not NaN)
}
__device__ __forceinline__ SubnormalScales subnormal_scales(half2 s) {
  const float f = __low2float(s);  // s is a broadcast pair (one column's scale)
  return {__float2half2_rn(f * 1048576.0f), __float2half2_rn(f * 65536.0f), __hneg2(s)};
}

// The Hopper kernel's run: each of `blocks` blocks takes this many consecutive tiles (stream-k) of `total_tiles`
// in columns of `k_tiles`. Where the even run spans at most four columns it is rounded up to whole columns if
// that adds at most 1/16 more tiles: no column is then split, so no block stores or reads partial sums, at the
// price of a few idle blocks (128 of 132 on the 7B o and down layers at m = 1024..4096). Each split column's
// end took ~3 us per block, all blocks at once (trace, session 30): 7B o at m = 4096 221 -> 178 us, down 557 ->
// 495, TriLM o 116 -> 104 (H100, NOTES.md session 30). The kernel's partition, and dispatch-check's model of it.
__host__ __device__ constexpr int hopper_run_tiles(int k_tiles, int total_tiles, int blocks) {
  const int even = ceil_div(total_tiles, blocks);
  const int whole = ceil_div(even, k_tiles) * k_tiles;
  return whole <= 4 * k_tiles && 16 * whole <= 17 * even ? whole : even;
}
constexpr int kHopperTileK = 128, kHopperTileN = 128;

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define TRIRUN_WGMMA 1
#endif

// Shared-memory matrix descriptor of a K-major operand in the 128-byte
// swizzle layout: start address, stride between 8-row groups (1024 bytes),
// swizzle mode 1. The leading offset is unused when a k16 step lies inside
// one 64-wide swizzle atom (set to 16 bytes as by convention).
__device__ __forceinline__ uint64_t wgmma_desc_sw128(uint32_t smem_addr) {
  return static_cast<uint64_t>((smem_addr & 0x3ffff) >> 4) | (static_cast<uint64_t>(1) << 16) |
         (static_cast<uint64_t>(1024 >> 4) << 32) | (static_cast<uint64_t>(1) << 62);
}
// The same descriptor `bytes` further on (a multiple of 16): the address field (bits 0..13, the
// address / 16) grows by bytes / 16 and cannot carry out of its 14 bits, since shared addresses stay
// below 256 KB. So a stage's k16 steps need one 32-bit add each from the stage's first descriptor,
// where building each from its address took four or five dependent uniform-datapath instructions in
// front of every wgmma (SASS of the 64-row instance, session 25).
__device__ __forceinline__ uint64_t wgmma_desc_advance(uint64_t desc, uint32_t bytes) {
  const uint32_t lo = static_cast<uint32_t>(desc) + (bytes >> 4);
  return (desc & 0xffffffff00000000ull) | lo;
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int n>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(n) : "memory");
}
// wgmma reads its register operands asynchronously: these empty statements
// tell the compiler the values are still in use, so it reuses none of their
// registers before wgmma_wait.
template <int n>
__device__ __forceinline__ void keep_f32(float (&v)[n]) {
#pragma unroll
  for (int i = 0; i < n; ++i) asm volatile("" : "+f"(v[i])::"memory");
}
__device__ __forceinline__ void keep_u32(uint32_t (&v)[4]) {
  asm volatile("" ::"r"(v[0]), "r"(v[1]), "r"(v[2]), "r"(v[3]) : "memory");
}

// D (64 x 32) += A (64 x 16, registers) x B (16 x 32, shared memory, K-major).
__device__ __forceinline__ void wgmma_m64n32k16(float (&d)[16], const uint32_t (&a)[4], uint64_t desc_b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %21, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n32k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, {%16, %17, %18, %19}, %20, p, 1, 1, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1));
}

// D (64 x 64) += A (64 x 16, registers) x B (16 x 64, shared memory, K-major).
__device__ __forceinline__ void wgmma_m64n64k16(float (&d)[32], const uint32_t (&a)[4], uint64_t desc_b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %36, p, 1, 1, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1));
}

// D (64 x 128) += A (64 x 16, registers) x B (16 x 128, shared memory, K-major).
__device__ __forceinline__ void wgmma_m64n128k16(float (&d)[64], const uint32_t (&a)[4], uint64_t desc_b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p, 1, 1, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1));
}


// D (64 x 144) += A (64 x 16, registers) x B (16 x 144, shared memory, K-major).
__device__ __forceinline__ void wgmma_m64n144k16(float (&d)[72], const uint32_t (&a)[4], uint64_t desc_b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %77, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n144k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71}, {%72, %73, %74, %75}, %76, p, 1, 1, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1));
}

// D (64 x 160) += A (64 x 16, registers) x B (16 x 160, shared memory, K-major).
__device__ __forceinline__ void wgmma_m64n160k16(float (&d)[80], const uint32_t (&a)[4], uint64_t desc_b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %85, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n160k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79}, {%80, %81, %82, %83}, %84, p, 1, 1, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1));
}

// D (64 x 176) += A (64 x 16, registers) x B (16 x 176, shared memory, K-major).
__device__ __forceinline__ void wgmma_m64n176k16(float (&d)[88], const uint32_t (&a)[4], uint64_t desc_b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %93, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n176k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87}, {%88, %89, %90, %91}, %92, p, 1, 1, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1));
}

// D (64 x 192) += A (64 x 16, registers) x B (16 x 192, shared memory, K-major).
__device__ __forceinline__ void wgmma_m64n192k16(float (&d)[96], const uint32_t (&a)[4], uint64_t desc_b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %101, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n192k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95}, {%96, %97, %98, %99}, %100, p, 1, 1, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1));
}

// D (64 x 208) += A (64 x 16, registers) x B (16 x 208, shared memory, K-major).
__device__ __forceinline__ void wgmma_m64n208k16(float (&d)[104], const uint32_t (&a)[4], uint64_t desc_b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %109, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n208k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103}, {%104, %105, %106, %107}, %108, p, 1, 1, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1));
}

// D (64 x 224) += A (64 x 16, registers) x B (16 x 224, shared memory, K-major).
__device__ __forceinline__ void wgmma_m64n224k16(float (&d)[112], const uint32_t (&a)[4], uint64_t desc_b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %117, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n224k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111}, {%112, %113, %114, %115}, %116, p, 1, 1, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1));
}

// D (64 x 256) += A (64 x 16, registers) x B (16 x 256, shared memory, K-major).
__device__ __forceinline__ void wgmma_m64n256k16(float (&d)[128], const uint32_t (&a)[4], uint64_t desc_b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %133, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, {%128, %129, %130, %131}, %132, p, 1, 1, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1));
}


template <int N_ACT>
__device__ __forceinline__ void wgmma_rs(float (&d)[N_ACT / 2], const uint32_t (&a)[4], uint64_t desc_b) {
  if constexpr (N_ACT == 32) wgmma_m64n32k16(d, a, desc_b);
  else if constexpr (N_ACT == 64) wgmma_m64n64k16(d, a, desc_b);
  else if constexpr (N_ACT == 128) wgmma_m64n128k16(d, a, desc_b);
  else if constexpr (N_ACT == 144) wgmma_m64n144k16(d, a, desc_b);
  else if constexpr (N_ACT == 160) wgmma_m64n160k16(d, a, desc_b);
  else if constexpr (N_ACT == 176) wgmma_m64n176k16(d, a, desc_b);
  else if constexpr (N_ACT == 192) wgmma_m64n192k16(d, a, desc_b);
  else if constexpr (N_ACT == 208) wgmma_m64n208k16(d, a, desc_b);
  else if constexpr (N_ACT == 224) wgmma_m64n224k16(d, a, desc_b);
  else wgmma_m64n256k16(d, a, desc_b);
}

// mbarriers (shared memory): a "full" barrier per stage that the producer's
// copies complete (transaction bytes), an "empty" one per stage that each
// consumer warp arrives at once its wgmmas have read the stage.
__device__ __forceinline__ void mbar_init(uint64_t* bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(static_cast<uint32_t>(__cvta_generic_to_shared(bar))),
               "r"(count));
}
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
  asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.shared::cta.b64 st, [%0];\n}\n" ::"r"(
                   static_cast<uint32_t>(__cvta_generic_to_shared(bar)))
               : "memory");
}
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.expect_tx.shared::cta.b64 st, [%0], %1;\n}\n" ::"r"(
                   static_cast<uint32_t>(__cvta_generic_to_shared(bar))),
               "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(bar));
  asm volatile(
      "{\n.reg .pred done;\nwait_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra wait_%=;\n}\n" ::"r"(addr),
      "r"(parity)
      : "memory");
}
// Shared memory aligned to 1024 bytes (the 128-byte swizzle's period), as an
// offset from the shared array itself: the compiler then still knows the
// pointer is in shared memory and emits LDS. (Rounding the generic address
// as an integer made every shared load a generic LD, with the long
// scoreboard's latency, and re-derived the window base in every loop.)
__device__ __forceinline__ char* align_1024(int4* smem_raw) {
  const uint32_t base = static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw));
  return reinterpret_cast<char*>(smem_raw) + ((1024u - (base & 1023u)) & 1023u);
}

// 2-D tensor copy global -> shared, completing `bytes` on an mbarrier.
__device__ __forceinline__ void tma_load_2d(void* dst, const CUtensorMap* map, int x, int y, uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(
          static_cast<uint32_t>(__cvta_generic_to_shared(dst))),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(x), "r"(y), "r"(static_cast<uint32_t>(__cvta_generic_to_shared(bar)))
      : "memory");
}
// 2-D tensor copy shared -> global (rows and columns past the map's bounds are not written), in the
// issuing thread's bulk async-group.
__device__ __forceinline__ void tma_store_2d(const CUtensorMap* map, const void* src, int x, int y) {
  asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%1, %2}], [%3];\n" ::"l"(
                   reinterpret_cast<uint64_t>(map)),
               "r"(x), "r"(y), "r"(static_cast<uint32_t>(__cvta_generic_to_shared(src)))
               : "memory");
}
__device__ __forceinline__ void bulk_commit_group() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }
// The thread's bulk stores have read their shared memory (it may be overwritten).
__device__ __forceinline__ void bulk_wait_read() { asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory"); }
// The thread's bulk stores are complete.
__device__ __forceinline__ void bulk_wait_all() { asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory"); }
// `count` arrivals at once (one thread standing for several warps).
__device__ __forceinline__ void mbar_arrive_count(uint64_t* bar, uint32_t count) {
  asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.shared::cta.b64 st, [%0], %1;\n}\n" ::"r"(
                   static_cast<uint32_t>(__cvta_generic_to_shared(bar))),
               "r"(count)
               : "memory");
}
// Barrier of the consumer warpgroups only (the producer runs ahead): 256 threads, or 384 with three.
template <int THREADS = 256>
struct ConsumerSync {
  __device__ void operator()() const { asm volatile("bar.sync 1, %0;\n" ::"n"(THREADS) : "memory"); }
};
// Barrier of one consumer warpgroup (ids 2 and 3).
__device__ __forceinline__ void warpgroup_sync(int wg) {
  asm volatile("bar.sync %0, 128;\n" ::"r"(2 + wg) : "memory");
}
// Four 8 x 8 fp16 matrices from mma-fragment registers to shared memory,
// transposed: a fragment's column i becomes the 16-byte row whose address
// lane 8 q + i of matrix q gives.
__device__ __forceinline__ void stmatrix_x4_trans(uint32_t addr, uint32_t r0, uint32_t r1, uint32_t r2, uint32_t r3) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(r0),
               "r"(r1), "r"(r2), "r"(r3)
               : "memory");
}
// Shared memory written by threads (the generic proxy) and next written by
// the tensor memory accelerator (the async proxy): order the two.
__device__ __forceinline__ void fence_proxy_async_shared() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// Template parameters:
//   N_ACT:   rows of A per batch slice (32, 64, 128, 144..224 in steps of 16, or 256): wgmma's N
//   STAGES:  depth of the copy pipeline
//   GROUPED: g = 128 (a scale row per 128-deep tile) or g = k (one row)
//   SLOTS:   split columns sum through parallel slots (64-row slices; see the end of a slice)
//   WGS:     consumer warpgroups, each on 64 columns of the tile: 2 (128-column tiles), or 3 (192-column
//            tiles; experiment, TRIRUN_EXP_HOPPER_WIDE=1: whether a third warpgroup keeps the tensor pipe
//            busier where the wgmmas' A comes from registers, NOTES.md session 37)
// Threads: WGS consumer warpgroups (decoding, wgmma, reduction) and one
// producer warpgroup whose first thread issues four tensor copies per stage (activations
// in two 64-wide swizzle atoms, packed weights, scales) and runs ahead across
// slice boundaries, so the next slice's tiles arrive during the reduction.
template <int WGS>
constexpr int hopper_threads() {
  return 128 * (WGS + 1);
}
// Output columns per tile of the Hopper kernel with WGS consumer warpgroups.
template <int WGS>
__host__ __device__ constexpr int hopper_tile_n() {
  return 64 * WGS;
}
template <int N_ACT, int STAGES, bool GROUPED, bool SLOTS, int WGS = 2>
__global__ void __launch_bounds__(hopper_threads<WGS>(), 1)
    trirun_hopper_kernel(const __grid_constant__ CUtensorMap map_a, const __grid_constant__ CUtensorMap map_b,
                         const __grid_constant__ CUtensorMap map_s, const __grid_constant__ CUtensorMap map_c,
                         const int4* __restrict__ S, int prob_m, int prob_n, int prob_k, int* locks,
                         float* __restrict__ partial, int early) {
#ifdef TRIRUN_WGMMA
  static_assert(WGS == 2 || WGS == 3, "two or three consumer warpgroups");
  constexpr int kAccs = N_ACT / 2;  // fp32 accumulators per thread: 64 x N_ACT per warpgroup
  constexpr int kKSteps = kHopperTileK / 16;
  constexpr int kTileN = hopper_tile_n<WGS>();
  constexpr int kConsumers = 128 * WGS;        // consumer threads
  constexpr int kConsumerWarps = kConsumers / 32;
  using Sync = ConsumerSync<kConsumers>;
  constexpr int kABytes = N_ACT * kHopperTileK * 2;  // activations, N_ACT rows x 128 k
  constexpr int kBBytes = kKSteps * kTileN * 4;      // 8 packed rows of kTileN words
  constexpr int kSBytes = kTileN * 2;
  constexpr uint32_t kStageTx = kABytes + kBBytes + (GROUPED ? kSBytes : 0);
  // Where C is staged for its tensor stores: with two warpgroups the slice's last activation stage, which
  // is exactly one C tile (N_ACT rows x 128 fp16); a 192-column C tile is larger than a stage, so three
  // take a buffer of their own (kOwnC), right after the activation stages.
  constexpr bool kOwnC = WGS > 2;
  constexpr int kCBytes = kOwnC ? N_ACT * kTileN * 2 : 0;
  // All activation stages first (1024-byte aligned, as the swizzle needs),
  // then C's own buffer (if any), weights, scales and the barriers.
  extern __shared__ int4 smem_raw[];
  char* const smem = align_1024(smem_raw);
  char* const smem_c = smem + STAGES * kABytes;
  char* const smem_b = smem_c + kCBytes;
  char* const smem_s = smem_b + STAGES * kBBytes;
  uint64_t* const full = reinterpret_cast<uint64_t*>(smem_s + STAGES * kSBytes);
  uint64_t* const empty = full + STAGES;

  const int k_tiles = prob_k / kHopperTileK;
  // With 192-column tiles the last one may stand out past n (n is a multiple of 128): its weights and
  // scales read as zeros (the tensor maps' bounds), so its columns past n come out zero, and C's tensor
  // stores write none of them.
  const int n_tiles = kOwnC ? ceil_div(prob_n, kTileN) : prob_n / kTileN;
  const int par = ceil_div(prob_m, N_ACT);
  // SLOTS (launch_hopper_rows: narrow layers at 33..64 rows, see the dispatcher): a split column sums through
  // parallel slots instead of the lock chain (see the end of a slice). Two slots of N_ACT x kTileN fp32 per
  // block, which fit the workspace's slot region (slot_bytes: 256 blocks x 256 x 128 fp32) for every block
  // count the dispatcher allows (kMaxBlocks, 256) up to 64 rows.
  constexpr bool kSlots = SLOTS && N_ACT <= 64;
  static_assert(!kSlots || 2 * 256 * N_ACT * kTileN <= 256 * 256 * 128, "two slots per block must fit");
  const int total_tiles = k_tiles * n_tiles * par;
  const int iters = hopper_run_tiles(k_tiles, total_tiles, static_cast<int>(gridDim.x));
  const int first_tile = iters * blockIdx.x;
  const int end_tile = min(first_tile + iters, total_tiles);
  TRIRUN_TRACE_BEGIN();
  allow_dependents();

  if (threadIdx.x == 0) {
    for (int st = 0; st < STAGES; ++st) {
      mbar_init(&full[st], 1);
      mbar_init(&empty[st], kConsumerWarps);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  if (threadIdx.x >= kConsumers) {
    // --- producer: tile t of this block's run goes to stage t % STAGES. Its
    // warpgroup gives most of its registers to the consumers (setmaxnreg).
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n" ::: "memory");
    if (threadIdx.x == kConsumers && !kExpHopperComputeOnly) {
      auto copy_weights = [&](int tile, int stage) {
        const int column = tile / k_tiles;
        const int k_tile = tile % k_tiles;
        const int n0 = (column % n_tiles) * kTileN;
        mbar_arrive_expect_tx(&full[stage], kStageTx);
        tma_load_2d(smem_b + stage * kBBytes, &map_b, n0, k_tile * kKSteps, &full[stage]);
        if (GROUPED) tma_load_2d(smem_s + stage * kSBytes, &map_s, n0, k_tile, &full[stage]);
      };
      auto copy_activations = [&](int tile, int stage) {
        const int column = tile / k_tiles;
        const int k_tile = tile % k_tiles;
        const int row0 = (column / n_tiles) * N_ACT;
        char* a_dst = smem + stage * kABytes;
        // Rows of A past m read as zeros (the tensor map's bounds).
        tma_load_2d(a_dst, &map_a, k_tile * kHopperTileK, row0, &full[stage]);
        tma_load_2d(a_dst + N_ACT * 128, &map_a, k_tile * kHopperTileK + 64, row0, &full[stage]);
      };
      // As a programmatic dependent: weights of the first `early` stages
      // before waiting for the grid before (A may be its output).
      const int ahead = min(min(early, STAGES), end_tile - first_tile);
      for (int t = 0; t < ahead; ++t) copy_weights(first_tile + t, t);
      wait_for_prerequisites();
      for (int t = 0; t < ahead; ++t) copy_activations(first_tile + t, t);
      for (int tile = first_tile + ahead; tile < end_tile; ++tile) {
        const int t = tile - first_tile;
        const int stage = t % STAGES;
        if (t >= STAGES) mbar_wait(&empty[stage], ((t / STAGES) - 1) & 1);
        copy_weights(tile, stage);
        copy_activations(tile, stage);
      }
    }
    return;
  }

  // --- consumers. Registers per thread: 65536 over 384 threads at launch, 40 for the producer's and
  // 232 for the consumers'; over 512 threads, 40 and 152 (4 x 40 + 12 x 152 warps' worth <= 16 x 128).
  // (ptxas still allocates by the launch bounds, 168 or 128 per thread for the whole kernel: with three
  // warpgroups the consumers' code must fit 128, see kBatch at the end of a slice.)
  if constexpr (WGS == 2)
    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n" ::: "memory");
  else
    asm volatile("setmaxnreg.inc.sync.aligned.u32 152;\n" ::: "memory");
  wait_for_prerequisites();                 // before writing C or the workspace
  const int wg = threadIdx.x / 128;         // 64-column chunk of the tile
  const int warp = (threadIdx.x / 32) % 4;  // 16 columns of that chunk
  const int lane = threadIdx.x % 32;
  // The lane's weight columns (relative to the tile) are rows g and g + 8 of
  // its warp's 16-row A fragment.
  const int col_lo = wg * 64 + warp * 16 + lane / 4;
  // The warp's 16 columns are tile (warp % 2) of packed word (warp / 2). Tile
  // b's codes sit 2 bits above tile a's, so one shift lets both use the masks
  // of dequant_word's codes 0, 2 (low byte) and 4, 6 (second byte).
  const int code_shift = 2 * (warp % 2);
  // Grouped scales: the 64-entry permutation puts columns c and c + 8 of a
  // chunk side by side, at 8 (c % 8) + c / 8; as a half2 index:
  const int scale_pair = (wg * 64 + 8 * (lane / 4) + 2 * warp) / 2;
  // The stage whose C tile thread 0's tensor stores may still be reading (-1: none; see the end of the
  // slice). Thread 0 hands it back to the producer, for all the consumer warps, once they have read it.
  int pending_c_stage = -1;
  auto release_c_stage = [&]() {
    if (pending_c_stage >= 0) {
      if (threadIdx.x == 0) {
        bulk_wait_read();
        mbar_arrive_count(&empty[pending_c_stage], kConsumerWarps);
      }
      pending_c_stage = -1;
    }
  };

  for (int tile = first_tile; tile < end_tile;) {
    // --- the slice: this block's run of tiles inside one column (as in trirun_kernel)
    const int column = tile / k_tiles;
    const int k_tile0 = tile % k_tiles;
    const int slice_tiles = min(end_tile - tile, k_tiles - k_tile0);
    const int slice = column / n_tiles;
    const int n_tile = column % n_tiles;
    const int first_block = (column * k_tiles) / iters;
    const int last_block = ((column + 1) * k_tiles - 1) / iters;
    const int slice_count = last_block - first_block + 1;
    const int slice_idx = last_block - static_cast<int>(blockIdx.x);
    const int row0 = slice * N_ACT;
    // The block that finishes the column writes C, staged through the shared
    // memory of the slice's last stage (see the end of the slice). With
    // slots (SLOTS) that is whichever block of a split column arrives last,
    // so every block holds its last stage until it knows.
    const bool writes_c = slice_idx == slice_count - 1;
    const bool holds_c_stage = !kOwnC && (writes_c || (kSlots && slice_count > 1));
    // In a ragged last tile (192 columns, n a multiple of 128) a warpgroup's 64 columns may lie wholly past n:
    // it then neither decodes nor multiplies (its accumulators stay zero), and leaves the tensor pipe to the
    // other two. It still waits for and retires every stage, and takes part in every barrier.
    const bool chunk_in_n = !kOwnC || n_tile * kTileN + wg * 64 < prob_n;

    // Per-column scales (g = k), read once per slice: the 32-entry
    // permutation puts column c at 8 ((c % 8) / 2) + 2 ((c / 8) % 4) + c % 2.
    half2 col_scale = as_h2(0u);
    if constexpr (!GROUPED) {
      const half* s_tile = reinterpret_cast<const half*>(S) + n_tile * kTileN;
      auto pos = [](int c) { return 32 * (c / 32) + 8 * ((c % 8) / 2) + 2 * ((c / 8) % 4) + c % 2; };
      if (chunk_in_n) col_scale = __halves2half2(s_tile[pos(col_lo)], s_tile[pos(col_lo + 8)]);
    }
    const half2 sub0 = as_h2(kSub0);
    const half2 mul2 = as_h2(kMul2), add2 = as_h2(kAdd2);

    float acc[kAccs];
#pragma unroll
    for (int e = 0; e < kAccs; ++e) acc[e] = 0.0f;

    // Tile i's 8 A fragments: step ks is {row g, k 0..7}, {row g + 8, k 0..7},
    // {row g, k 8..15}, {row g + 8, k 8..15} (2 halves per register).
    auto decode = [&](int stage, uint32_t (&frag)[kKSteps][4]) {
      const uint32_t* sh_b = reinterpret_cast<const uint32_t*>(smem_b + stage * kBBytes);
      half2 s2 = col_scale;
      if constexpr (GROUPED) s2 = reinterpret_cast<const half2*>(smem_s + stage * kSBytes)[scale_pair];
      // The thread's packed word of step ks.
      auto word = [&](int ks) { return sh_b[ks * kTileN + wg * 64 + lane * 2 + warp / 2]; };
      const half2 s_lo = __low2half2(s2), s_hi = __high2half2(s2);
      // The codes as fp16 subnormals, one fma per register (see subnormal_scales), where every scale
      // of the warp's tile is below 2^-4; else the decode below (mask, subtract, scale).
      if (__all_sync(0xffffffffu, subnormal_scales_fit(s2))) {
        const SubnormalScales lo = subnormal_scales(s_lo), hi = subnormal_scales(s_hi);
#pragma unroll
        for (int ks = 0; ks < kKSteps; ++ks) {
          const uint32_t q = word(ks);
          // The warp's codes sit at bits code_shift + {0, 4, 8, 12} (+ 16 for each pair's second half):
          // x has the first two at bits 4 and 8 of each half, y the last two.
          const uint32_t x = q << (4 - code_shift), y = q >> (4 + code_shift);
          frag[ks][0] = as_u32(__hfma2(as_h2(x & 0x00300030u), lo.unit4, lo.minus));
          frag[ks][1] = as_u32(__hfma2(as_h2(y & 0x00300030u), hi.unit4, hi.minus));
          frag[ks][2] = as_u32(__hfma2(as_h2(x & 0x03000300u), lo.unit8, lo.minus));
          frag[ks][3] = as_u32(__hfma2(as_h2(y & 0x03000300u), hi.unit8, hi.minus));
        }
        return;
      }
#pragma unroll
      for (int ks = 0; ks < kKSteps; ++ks) {
        const uint32_t q = word(ks);
        const uint32_t lo = q >> code_shift, hi = q >> (8 + code_shift);
        frag[ks][0] = as_u32(__hmul2(__hsub2(as_h2(mask_or_1024(lo, 0x00030003u)), sub0), s_lo));
        frag[ks][1] = as_u32(__hmul2(__hsub2(as_h2(mask_or_1024(hi, 0x00030003u)), sub0), s_hi));
        frag[ks][2] = as_u32(__hmul2(__hfma2(as_h2(mask_or_1024(lo, 0x00300030u)), mul2, add2), s_lo));
        frag[ks][3] = as_u32(__hmul2(__hfma2(as_h2(mask_or_1024(hi, 0x00300030u)), mul2, add2), s_hi));
      }
    };
    // Step ks's activations: atom ks / 4, 32 bytes further per step inside it.
    auto step_desc = [&](uint64_t desc0, int ks) {
      return wgmma_desc_advance(desc0, (ks / 4) * N_ACT * 128 + (ks % 4) * 32);
    };
    auto stage_desc = [&](int stage) {
      return wgmma_desc_sw128(static_cast<uint32_t>(__cvta_generic_to_shared(smem + stage * kABytes)));
    };
    auto issue = [&](int stage, uint32_t (&frag)[kKSteps][4]) {
      const uint64_t desc0 = stage_desc(stage);
      keep_f32(acc);
      wgmma_fence();
#pragma unroll
      for (int ks = 0; ks < kKSteps; ++ks) wgmma_rs<N_ACT>(acc, frag[ks], step_desc(desc0, ks));
      wgmma_commit();
    };
    // (All eight steps decoded, then their wgmmas behind one fence: issuing each
    // step's wgmma behind a fence of its own right after its decode was slower,
    // 70B at m = 64 204.6 -> 231 us, H100, session 26. The decoding does not
    // overlap wgmmas whose A comes from registers, though it does overlap
    // shared-memory ones; nor did the two warpgroups taking turns at issuing
    // help: tools/wgmma-rate-probe.cu, NOTES.md session 34.)
    auto decode_issue = [&](int stage, uint32_t (&frag)[kKSteps][4]) {
      if constexpr (kExpHopperCopyOnly) return;
      if (!chunk_in_n) return;  // (warpgroup-uniform: wgmma's .aligned forms need the whole warpgroup)
      decode(stage, frag);
      issue(stage, frag);
    };
    // Tile i's wgmmas are complete: its fragment registers may be reused and
    // its stage refilled.
    auto retire = [&](int stage, uint32_t (&frag)[kKSteps][4]) {
#pragma unroll
      for (int ks = 0; ks < kKSteps; ++ks) keep_u32(frag[ks]);
      __syncwarp();
      if (lane == 0) mbar_arrive(&empty[stage]);
    };
    // One tile's wgmmas stay in flight while the next tile is decoded, so the
    // fragments alternate between two register sets (a loop unrolled by two).
    uint32_t frag_a[kKSteps][4], frag_b[kKSteps][4];
    const int t0 = tile - first_tile;
    // Tile i of the slice sits in stage (t0 + i) % STAGES with phase ((t0 + i) / STAGES) & 1. Both are
    // advanced tile by tile (a signed division per tile cost ~10 instructions on the consumers' path).
    const int last_stage = (t0 + slice_tiles - 1) % STAGES;
    int cur_stage = t0 % STAGES;
    uint32_t cur_phase = (t0 / STAGES) & 1;
    auto advance = [&]() {
      if (++cur_stage == STAGES) {
        cur_stage = 0;
        cur_phase ^= 1;
      }
    };
    // The current tile's stage filled (`first`: the block's first tile, for the trace).
    auto wait_full = [&](bool first) {
      if constexpr (!kExpHopperComputeOnly) mbar_wait(&full[cur_stage], cur_phase);
      if (first && tile == first_tile) TRIRUN_TRACE_AT(1);
    };
    if constexpr (N_ACT == 256) {
      // 128 accumulators per thread leave no registers for a second
      // fragment set: decode, multiply, wait.
      for (int i = 0; i < slice_tiles; ++i) {
        wait_full(i == 0);
        if (kExpDecodeOnce && i > 0)
          issue(cur_stage, frag_a);
        else
          decode_issue(cur_stage, frag_a);
        if (i == 0) release_c_stage();
        wgmma_wait<0>();
        if (i + 1 < slice_tiles || !holds_c_stage) retire(cur_stage, frag_a);
        advance();
      }
      keep_f32(acc);
    } else {
      // (The next tile's words loaded here, ahead of the retire of the tile before, lost 3-10% at m = 17..64,
      // and loaded only where its stage was already full 6-14%: NOTES.md, sessions 35 and 36.)
      int stage_b = 0;  // the stage of the tile in frag_b
      for (int i = 0; i < slice_tiles; i += 2) {
        wait_full(i == 0);
        const int stage_a = cur_stage;
        if (kExpDecodeOnce && i > 0)
          issue(stage_a, frag_a);
        else
          decode_issue(stage_a, frag_a);
        if (i == 0) release_c_stage();
        if (i > 0) {
          wgmma_wait<1>();  // tile i - 1 (frag_b) done
          retire(stage_b, frag_b);
        }
        advance();
        if (i + 1 < slice_tiles) {
          wait_full(false);
          stage_b = cur_stage;
          if (kExpDecodeOnce && i > 0)
            issue(stage_b, frag_b);
          else
            decode_issue(stage_b, frag_b);
          wgmma_wait<1>();  // tile i (frag_a) done
          retire(stage_a, frag_a);
          advance();
        }
      }
      wgmma_wait<0>();
      keep_f32(acc);
      if (!holds_c_stage) {
        if (slice_tiles % 2 == 1)
          retire(last_stage, frag_a);
        else
          retire(last_stage, frag_b);
      }
    }

    // --- global reduction and output. Accumulator e = 4 j + 2 h + x holds
    // weight column col_lo + 8 h and activation row 8 j + 2 (lane % 4) + x.
    // Measured (H200, run 104): this end of a slice took ~8 us of a 7B layer's
    // ~37 at m = 256 while it zeroed the slot after reading it and stored C
    // as 2-byte values (each warp store four half-filled sectors). Now slots
    // are written before they are read and never zeroed (they lie apart from
    // the locks: trirun_matmul's workspace layout), move as 16-byte vectors,
    // and C leaves through shared memory by tensor stores.
    TRIRUN_TRACE_AT(2);
    TRIRUN_TRACE_CLOCK(trace_end_start);  // trace builds: sums over all slices (see TRIRUN_TRACE_SUM)
    int* lock = locks + column;
    // A slot holds a block's accumulators in register order, four per thread
    // and vector: coalesced whatever the fragment layout. Loads all come before
    // the adds (and any store: see trirun_kernel).
    auto store_slot = [](float4* to, const float (&from)[kAccs]) {
#pragma unroll
      for (int q = 0; q < kAccs / 4; ++q)
        __stcg(to + q * kConsumers, make_float4(from[4 * q], from[4 * q + 1], from[4 * q + 2], from[4 * q + 3]));
    };
    bool c_writer = writes_c;
    if (kSlots && slice_count > 1) {
      // Slots: this block's partial sums to its own slot (the first or the last slice of its run), counted in
      // by thread 0 (fence, then the atomic); the block that arrives last adds up every block's slot of the
      // column in block order, its own sums from registers, so the result does not depend on who was last.
      constexpr int kSlotVecs = N_ACT * kTileN / 4;
      __shared__ int hopper_last_arrival;  // thread 0's answer, for the block
      auto slot_of = [&](int b) {
        const int which = iters * b >= column * k_tiles ? 0 : 1;  // b's first slice is this column's, or its last
        return reinterpret_cast<float4*>(partial) + static_cast<size_t>(2 * b + which) * kSlotVecs + threadIdx.x;
      };
      store_slot(slot_of(static_cast<int>(blockIdx.x)), acc);
      Sync{}();  // every thread's stores before thread 0's fence
      if (threadIdx.x == 0) {
        int arrived;
        asm volatile("fence.acq_rel.gpu;\n" ::);
        asm volatile("atom.add.relaxed.gpu.global.s32 %0, [%1], 1;\n" : "=r"(arrived) : "l"(lock));
        const bool last = arrived == slice_count - 1;
        if (last) {
          asm volatile("fence.acq_rel.gpu;\n" ::);  // the other blocks' slots, before the block reads them
          asm volatile("st.global.relaxed.gpu.b32 [%0], %1;\n" ::"l"(lock), "r"(0));  // the workspace left zero
        }
        hopper_last_arrival = last;
      }
      Sync{}();
      c_writer = hopper_last_arrival != 0;
      if (c_writer) {
        float sum[kAccs];
#pragma unroll
        for (int e = 0; e < kAccs; ++e) sum[e] = 0.0f;
        // The slots of two blocks loaded at once, then added in block order (the same additions in the
        // same order as one block at a time, so the same bits): one L2 round trip per two blocks. (Four at
        // once spill at 168 registers.) H100, session 34, graph, two rounds: TriLM set at m = 64 51.8-52.1 ->
        // 51.0-51.1 us, BitNet 37.7-37.8 -> 37.1; 7B and 70B unchanged. Three warpgroups (512 threads: 128
        // registers, which ptxas allocates for the whole kernel whatever setmaxnreg gives the consumers)
        // spilled 1.5 KB with two, and 204 bytes with one while the block's own sums stayed in registers
        // beside the running sum: they load one block's slot at a time, their own too (the bits they
        // stored above, so the same sums).
        constexpr int kBatch = WGS > 2 ? 1 : 2;
        constexpr bool kOwnSlotReloaded = WGS > 2;
        for (int b0 = first_block; b0 <= last_block; b0 += kBatch) {
          float4 v[kBatch][kAccs / 4];
#pragma unroll
          for (int j = 0; j < kBatch; ++j) {
            const int b = b0 + j;
            if (b <= last_block && (kOwnSlotReloaded || b != static_cast<int>(blockIdx.x))) {
              const float4* from = slot_of(b);
#pragma unroll
              for (int q = 0; q < kAccs / 4; ++q) v[j][q] = __ldcg(from + q * kConsumers);
            }
          }
#pragma unroll
          for (int j = 0; j < kBatch; ++j) {
            const int b = b0 + j;
            if (b > last_block) continue;
            if (!kOwnSlotReloaded && b == static_cast<int>(blockIdx.x)) {
#pragma unroll
              for (int e = 0; e < kAccs; ++e) sum[e] += acc[e];
            } else {
#pragma unroll
              for (int q = 0; q < kAccs / 4; ++q) {
                sum[4 * q] += v[j][q].x;
                sum[4 * q + 1] += v[j][q].y;
                sum[4 * q + 2] += v[j][q].z;
                sum[4 * q + 3] += v[j][q].w;
              }
            }
          }
        }
#pragma unroll
        for (int e = 0; e < kAccs; ++e) acc[e] = sum[e];
      } else if (!kOwnC) {
        // Not the writer: the held stage goes back to the producer now (what retire does per warp).
        __syncwarp();
        if (lane == 0) mbar_arrive(&empty[last_stage]);
      }
    } else if (slice_count > 1) {
      lock_wait(lock, slice_idx, Sync{});
    }
    TRIRUN_TRACE_AT(3);
    const bool read_partial = !kSlots && slice_count > 1 && slice_idx > 0;
    // The chain's running sum of the column, in the slot of its last block.
    float4* slot = reinterpret_cast<float4*>(partial + static_cast<size_t>(last_block) * (N_ACT * kTileN)) +
                   threadIdx.x;
    if (read_partial) {
      // The previous block's running sum, every load before the first add.
      float4 prev[kAccs / 4];
#pragma unroll
      for (int q = 0; q < kAccs / 4; ++q) prev[q] = __ldcg(slot + q * kConsumers);
#pragma unroll
      for (int q = 0; q < kAccs / 4; ++q) {
        acc[4 * q] += prev[q].x;
        acc[4 * q + 1] += prev[q].y;
        acc[4 * q + 2] += prev[q].z;
        acc[4 * q + 3] += prev[q].w;
      }
    }
    if (!c_writer) {
      if (!kSlots) store_slot(slot, acc);  // the chain: this block's running sum for the next block of the column
    } else {
      // C through the last stage's activation buffer (N_ACT rows x 256 bytes,
      // exactly one C tile of N_ACT rows x 128 fp16 columns), held back from
      // the producer until now. Both warpgroups' wgmmas read all of it, so
      // neither writes before both are done. Then two tensor stores, which one
      // thread issues, take it to global memory while the consumers go on to
      // the next slice; the stage goes back to the producer after that slice's
      // first tile (release_c_stage), by when the stores have read it. (Every
      // thread copying its share out with 16-byte loads and stores held the
      // consumers ~2 us per C tile at m = 4096: 7B gate/up -1.4..-1.7%, 70B
      // 8192 x 43520 at m = 128 -3..-8%, H100, NOTES.md session 30.)
      // With three warpgroups (kOwnC) C has a buffer of its own, which the previous C tile's stores may still
      // be reading: thread 0 waits for that before the barrier.
      char* const c_src = kOwnC ? smem_c : smem + last_stage * kABytes;
      const uint32_t c_tile = shared_address(c_src);
      if (kOwnC && threadIdx.x == 0) bulk_wait_read();
      Sync{}();
      // Warpgroup wg's 64 columns in part wg of the buffer (N_ACT rows of 128 bytes), 16-byte chunk c of row r
      // at r * 128 + (c ^ (r % 8)) * 16: the tensor map's 128-byte swizzle, and conflict-free for stmatrix.
      const uint32_t half_tile = c_tile + wg * (N_ACT * 128);
      const int q = lane / 8, i = lane % 8;
      const int chunk = 2 * warp + q % 2;
#pragma unroll
      for (int p = 0; p < N_ACT / 16; ++p) {
        const int j0 = 2 * p, j1 = 2 * p + 1;
        const int r = 8 * (j0 + q / 2) + i;
        stmatrix_x4_trans(half_tile + r * 128 + ((chunk ^ (r % 8)) * 16),
                          as_u32(__floats2half2_rn(acc[4 * j0], acc[4 * j0 + 1])),
                          as_u32(__floats2half2_rn(acc[4 * j0 + 2], acc[4 * j0 + 3])),
                          as_u32(__floats2half2_rn(acc[4 * j1], acc[4 * j1 + 1])),
                          as_u32(__floats2half2_rn(acc[4 * j1 + 2], acc[4 * j1 + 3])));
      }
      // Each thread's writes made visible to the tensor copies (the async proxy), then one thread stores.
      fence_proxy_async_shared();
      Sync{}();
      if (threadIdx.x == 0) {
#pragma unroll
        for (int w = 0; w < WGS; ++w) {
          const int n0 = n_tile * kTileN + 64 * w;
          if (!kOwnC || n0 < prob_n) tma_store_2d(&map_c, c_src + w * (N_ACT * 128), n0, row0);  // none past n
        }
        bulk_commit_group();
      }
      if (!kOwnC) pending_c_stage = last_stage;
    }
    TRIRUN_TRACE_AT(4);
    if (!kSlots && slice_count > 1) lock_release(lock, writes_c, Sync{});
    // Trace builds: the slice's end (lock wait, partial sums, C) in cycles, summed over the block's slices;
    // how many ends; the cycles of those that read a partial; of those that wrote C.
    TRIRUN_TRACE_CLOCK(trace_end_stop);  // one reading: sum 0 minus sum 3 is then the ends without C
    TRIRUN_TRACE_SUM(0, trace_end_stop - trace_end_start);
    TRIRUN_TRACE_SUM(1, 1);
    TRIRUN_TRACE_SUM(2, read_partial || (kSlots && c_writer && slice_count > 1) ? trace_end_stop - trace_end_start : 0);
    TRIRUN_TRACE_SUM(3, c_writer ? trace_end_stop - trace_end_start : 0);
    tile += slice_tiles;
  }
  if (threadIdx.x == 0) bulk_wait_all();  // the last C tile's stores, before the block's shared memory goes away
  TRIRUN_TRACE_AT(5);
#endif  // TRIRUN_WGMMA
}

// ------------------------------------- the small-batch kernel with copy engines
//
// trirun_small_kernel on sm_90, fed by the tensor memory accelerator instead
// of per-thread cp.async copies:
// * one producer thread issues a stage in a handful of tensor copies:
//   activations in 64-wide 128-byte-swizzle boxes, weights and scales each in
//   one box (8-byte elements, so that a 512-column row fits a box), so the
//   consumers no longer spend ~100 of their ~470 instructions per 16 KB tile
//   on copy addressing;
// * the producer runs up to STAGES tiles ahead across column boundaries and
//   through the reductions (the cp.async pipeline drained at every column);
// * the eight consumer warps wait only on the stage's "full" mbarrier and
//   release it through its "empty" one: no block barrier per tile;
// * a start-up ramp (see the producer): what made the difference, measured
//   (H100, 70B layers at m = 1: 124 us with cp.async, 131 us with TMA alone,
//   119 us with the ramp; NOTES.md, session 6).
// With programmatic dependent launch the producer requests the first tile's
// weights before griddepcontrol.wait and its activations after it.
// The consumers' arithmetic is trirun_small_kernel's, except that the
// activations' shared-memory layout is the TMA swizzle's: atom a (64 k), row
// r, 16-byte chunk c at a * (rows * 128) + r * 128 + ((c ^ r) % 8) * 16,
// which is the same XOR pattern over a different order, so ldmatrix stays
// free of bank conflicts. The k_warps' partial sums at the end of a run go
// through the shared memory of the run's last stage, which is released to
// the producer only after that.
// Threads: two consumer warpgroups and a producer warpgroup (of which one
// thread works): registers move to the consumers with setmaxnreg, as in the
// Hopper kernel (the 32-row tiles need ~210 per thread; 288 threads would
// cap every thread at 168).
constexpr int kSmallTmaThreads = 384;
// Whether the push exchange fits a block: the vectors of MB8 x 4 accumulators of its N_WARPS x 32 lanes from
// up to 8 senders (kMaxCluster) in `stages_bytes` of stages. The kernel's kPush and the dispatcher's
// small_push_fits, which must agree.
__host__ __device__ constexpr bool push_exchange_fits(int mb8, int n_warps, long long stages_bytes) {
  return 8LL * (mb8 * 4) * (n_warps * 32) * 16 <= stages_bytes;
}

template <int MB8, int N_WARPS, int STAGES, bool GROUPED, bool CHAINED, bool CLUSTERED>
__global__ void __launch_bounds__(kSmallTmaThreads, 1)
    trirun_small_tma_kernel(const __grid_constant__ CUtensorMap map_a, const __grid_constant__ CUtensorMap map_b,
                            const __grid_constant__ CUtensorMap map_s, const int4* __restrict__ S, int4* __restrict__ C,
                            int prob_m, int prob_n, int prob_k, int* locks, float* __restrict__ partial,
                            float* __restrict__ slots, int ramp, int early) {
#ifdef TRIRUN_WGMMA
  constexpr int kWarps = 8;  // consumers
  constexpr int kKWarps = kWarps / N_WARPS;
  constexpr int kKSteps = 8;  // k16 steps per warp per tile: one group
  constexpr int K_BLOCKS = kKSteps * kKWarps;
  static_assert(N_WARPS * kKWarps == kWarps, "warps must tile the block");
  constexpr int kThreadK = K_BLOCKS * 16;
  constexpr int kThreadN = N_WARPS * 64;
  constexpr int kRows = MB8 * 8;
  constexpr int kAtoms = kThreadK / 64;
  constexpr int kAtomBytes = kRows * 128;
  constexpr int kABytes = kAtoms * kAtomBytes;
  constexpr int kBBytes = K_BLOCKS * kThreadN * 4;
  constexpr int kSBytes = GROUPED ? kKWarps * kThreadN * 2 : 0;
  constexpr int kStageBytes = kABytes + kBBytes + kSBytes;
  constexpr uint32_t kStageTx = kStageBytes;  // boxes count whole, zero-filled parts included
  static_assert(kStageBytes % 1024 == 0, "stages must keep the swizzle's 1024-byte alignment");
  constexpr int kPerLane = MB8 * 16;  // accumulators per lane
  static_assert((kKWarps - 1) * N_WARPS * 32 * kPerLane * 4 <= kStageBytes, "k-warp sums must fit a stage");
  static_assert(N_WARPS * 32 * kPerLane * 4 <= STAGES * kStageBytes, "a cluster's exchange must fit the stages");
  // A clustered launch sums a column's partial sums by the push exchange (see the end of the kernel) where
  // every block's vectors for up to 8 (kMaxCluster) senders fit the stages; elsewhere by cluster_sum.
  constexpr int kPushVecs = MB8 * 4, kPushLanes = N_WARPS * 32;
  constexpr bool kPush = CLUSTERED && push_exchange_fits(MB8, N_WARPS, static_cast<long long>(STAGES) * kStageBytes);
  extern __shared__ int4 smem_raw[];
  char* const smem = align_1024(smem_raw);
  uint64_t* const full = reinterpret_cast<uint64_t*>(smem + STAGES * kStageBytes);
  uint64_t* const empty = full + STAGES;
  uint64_t* const push_bar = empty + STAGES;  // kPush only: the bytes pushed to this block

  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  TRIRUN_TRACE_BEGIN();
  allow_dependents();

  const int k_tiles = ceil_div(prob_k, kThreadK);
  const int k_groups = prob_k / 128;
  const int n_tiles = prob_n / kThreadN;
  const int total_tiles = k_tiles * n_tiles;
  // Striped runs of `iters` tiles; or, in a clustered launch, cluster c is
  // column c and its blocks split its k tiles in runs of ceil(k_tiles / size)
  // (the dispatcher leaves no block without tiles).
  const int ranks = CLUSTERED ? cluster_blocks() : 1;
  const int rank = CLUSTERED ? cluster_rank() : 0;
  const int iters = CLUSTERED ? ceil_div(k_tiles, ranks) : ceil_div(total_tiles, static_cast<int>(gridDim.x));
  const int cluster_column = static_cast<int>(blockIdx.x) / ranks;  // clustered launches only
  const TileRun run = CLUSTERED ? cluster_run(cluster_column, rank, ranks, k_tiles)
                                : TileRun{static_cast<int>(iters * blockIdx.x),
                                          min(static_cast<int>(iters * blockIdx.x) + iters, total_tiles)};
  const int first_tile = run.first;
  const int end_tile = run.end;

  if (threadIdx.x == 0) {
    for (int st = 0; st < STAGES; ++st) {
      mbar_init(&full[st], 1);
      mbar_init(&empty[st], kWarps);
    }
    if (kPush) mbar_init(push_bar, 1);
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  if (warp >= kWarps) {
    // --- producer: tile t of the run goes to stage t % STAGES.
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n" ::: "memory");
#ifdef TRIRUN_COMPUTE_ONLY
    if (false) {
#else
    if (threadIdx.x == 32 * kWarps) {
#endif
      auto copy_weights = [&](int tile, int stage) {
        char* st = smem + stage * kStageBytes;
        const int n_tile = tile / k_tiles, k_tile = tile % k_tiles;
        mbar_arrive_expect_tx(&full[stage], kStageTx);
        // Rows past k (a partial last tile) come back as zeros: the map's bounds.
#if defined(TRIRUN_COPY_ONLY) && TRIRUN_COPY_ONLY == 2
        // Experiment: tile t as the t-th contiguous kBBytes of B (the map is 2 KB rows).
        (void)n_tile, (void)k_tile;
        tma_load_2d(st + kABytes, &map_b, 0, tile * (kBBytes / 2048), &full[stage]);
#else
        tma_load_2d(st + kABytes, &map_b, n_tile * (kThreadN / 2), k_tile * K_BLOCKS, &full[stage]);
#endif
        if constexpr (GROUPED)
          tma_load_2d(st + kABytes + kBBytes, &map_s, n_tile * (kThreadN / 4), k_tile * kKWarps, &full[stage]);
      };
      auto copy_activations = [&](int tile, int stage) {
        char* st = smem + stage * kStageBytes;
        const int k0 = (tile % k_tiles) * kThreadK;
        // Rows past m and columns past k come back as zeros.
#pragma unroll
        for (int a = 0; a < kAtoms; ++a) tma_load_2d(st + a * kAtomBytes, &map_a, k0 + 64 * a, 0, &full[stage]);
      };
      // Ramp: when every SM asks for all its stages at once, the memory
      // system serves the whole burst interleaved and each SM's first tile
      // arrives late (traces: 5-7 us into a 70B-sized call, against ~2 us);
      // the consumers are about as fast as memory, so time lost before the
      // first tile is not made up later. So `ramp` tiles are requested at
      // once (2 by default), then tile t (< STAGES) once tile t - ramp has
      // landed, until the pipeline is full; ramp = 0 (TRIRUN_RAMP=0): the
      // first tile alone, then tile t once tile (t - 1) / 2 landed. The
      // doubling ramp was best before calls let the next one launch early;
      // since then 2 at once is (H100, trirun-bench, two rounds: 7B m = 1
      // 3.60x / 3.61x vs 3.31x / 3.47x, 70B 5.50x / 5.51x vs 5.45x / 5.48x).
      // Launched as a programmatic dependent, this block may start while the
      // grid before still finishes: `early` tiles' weights (at least the
      // ramp's first batch) are requested before waiting for it, since A may
      // be its output (TRIRUN_EARLY=n, experiments; default 1).
      const int first_batch = max(ramp > 0 ? ramp : 1, early);
      const int ahead = min(min(first_batch, STAGES), end_tile - first_tile);
      for (int t = 0; t < ahead; ++t) copy_weights(first_tile + t, t);
      wait_for_prerequisites();
      for (int t = 0; t < ahead; ++t) copy_activations(first_tile + t, t);
      for (int tile = first_tile + ahead; tile < end_tile; ++tile) {
        const int t = tile - first_tile;
        const int stage = t % STAGES;
        if (t >= STAGES)
          mbar_wait(&empty[stage], ((t / STAGES) - 1) & 1);
        else
          mbar_wait(&full[ramp > 0 ? t - ramp : (t - 1) / 2], 0);  // first fill of that stage
        copy_weights(tile, stage);
        copy_activations(tile, stage);
      }
    }
    if constexpr (kPush) {
      cluster_sync_relaxed();  // the consumers' one barrier (see the push exchange)
    } else if constexpr (CLUSTERED) {
      // Every thread of the cluster takes part in both of the consumers' cluster barriers.
      cluster_sync();
      cluster_sync_relaxed();
    }
    return;
  }

  // --- consumers (256 threads; their barrier is ConsumerSync, bar 1)
  asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n" ::: "memory");
  wait_for_prerequisites();  // before writing C or the workspace
  const int n_warp = warp % N_WARPS;
  const int k_warp = warp / N_WARPS;
  const int g = lane / 4;  // "group id" of the mma fragment layouts
  const int t = lane % 4;
  const ConsumerSync<> sync;
  // The lane's ldmatrix row (r) and 16-byte chunk (2 (kb % 4) + lane / 8 % 2
  // in its atom) for k16 step kb: the swizzle XORs the chunk with r % 8 =
  // lane % 8, so the offset inside an atom depends only on kb % 4 (and the
  // atom is kb / 4): four per-lane offsets, computed once.
  int a_lane[4];
#pragma unroll
  for (int q = 0; q < 4; ++q)
    a_lane[q] = ((MB8 >= 2 ? (lane / 16) * 8 : 0) + lane % 8) * 8 + ((2 * q + (lane / 8) % 2) ^ (lane % 8));
  // The lane's shared-memory addresses in stage 0, computed once: its four
  // ldmatrix addresses (atom 2 k_warp, offset a_lane[q]), its first packed
  // words and its scale vector. A tile adds its stage's offset and a k16 step
  // a constant, so the tile loop spends no instructions on addressing (the
  // compiler used to rebuild these from the lane index in every tile).
  // (The empty asm statements make the values opaque, so that the compiler
  // keeps them in registers instead of recomputing them in the loop.)
  const uint32_t smem_u32 = shared_address(smem);
  // The push exchange: sender src's copy of vector v of this lane, in this block's shared memory.
  [[maybe_unused]] auto push_slot = [&](int src, int v) {
    return smem_u32 + static_cast<uint32_t>(((src * kPushVecs + v) * kPushLanes + n_warp * 32 + lane) * 16);
  };
  uint32_t a_addr[4];
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    a_addr[q] = smem_u32 + (2 * k_warp * (kRows * 8) + a_lane[q]) * 16;
    asm volatile("" : "+r"(a_addr[q]));
  }
  uint32_t b_addr = smem_u32 + kABytes + (k_warp * kKSteps * kThreadN + n_warp * 64 + lane * 2) * 4;
  uint32_t s_addr = smem_u32 + kABytes + kBBytes + (k_warp * (kThreadN / 8) + n_warp * 8 + lane / 4) * 16;
  asm volatile("" : "+r"(b_addr), "+r"(s_addr));
  // Stage and mbarrier phase of the next tile, counted across the block's
  // whole run (tile t of the run is in stage t % STAGES, phase t / STAGES).
  int stage = 0;
  uint32_t phase = 0;

  // The reductions over the blocks of a column: as trirun_small_kernel.
  constexpr bool chained = CHAINED;
  const SmallOutput<MB8, N_WARPS, ConsumerSync<>> out{reinterpret_cast<half*>(C), locks, partial, slots, prob_m, prob_n,
                                                     iters, k_tiles, lane, n_warp, k_warp, g, t, sync};
  __shared__ int last_arrival;
  SmallPending pending;
  int pending_arrived = 0;

  for (int tile = first_tile; tile < end_tile;) {
    const int n_tile = tile / k_tiles;
    const int k_tile0 = tile % k_tiles;
    const int slice_tiles = min(end_tile - tile, k_tiles - k_tile0);
    const int first_block = (n_tile * k_tiles) / iters;
    const int last_block = ((n_tile + 1) * k_tiles - 1) / iters;
    const int slice_count = last_block - first_block + 1;
    [[maybe_unused]] const int slice_idx = last_block - static_cast<int>(blockIdx.x);

    float acc[MB8][4][4];
#pragma unroll
    for (int mb = 0; mb < MB8; ++mb)
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[mb][j][e] = 0.0f;

    [[maybe_unused]] int last_stage = stage;
    for (int i = 0; i < slice_tiles; ++i) {
#ifndef TRIRUN_COMPUTE_ONLY
      mbar_wait(&full[stage], phase);
#endif
      if (i == 0 && tile == first_tile) TRIRUN_TRACE_AT(1);
      const uint32_t st = static_cast<uint32_t>(stage) * kStageBytes;

      // Warp-uniform: in the last tile of a column, warps past k have nothing.
#ifdef TRIRUN_COPY_ONLY
      // Experiment: the stages are waited for and released, nothing computed.
      if (false) {
#else
      if ((k_tile0 + i) * kKWarps + k_warp < k_groups) {
#endif
        // Atom k_warp * 2 + ks / 4, rows 16 pair.., then the lane's offset.
        small_warp_tile<MB8, kKSteps, GROUPED>(
            acc, [&](int ks, int pair) { return a_addr[ks % 4] + st + ((ks / 4) * (kRows * 8) + pair * 128) * 16; },
            [&](int ks) { return lds64(b_addr + st + ks * kThreadN * 4); }, [&] { return lds128(s_addr + st); });
      }
      // Every stage but the run's last goes back to the producer now.
      if (kKWarps == 1 || i + 1 < slice_tiles) {
        __syncwarp();
        if (lane == 0) mbar_arrive(&empty[stage]);
      }
      last_stage = stage;
      if (++stage == STAGES) {
        stage = 0;
        phase ^= 1;
      }
    }

    TRIRUN_TRACE_AT(2);
    if constexpr (kKWarps > 1) {
      // The k_warps' sums, through the last stage's shared memory (all its
      // reads are done once every consumer warp is past the barrier).
      float* red = reinterpret_cast<float*>(smem + last_stage * kStageBytes);
      sync();
      if (k_warp > 0) {
        float* dstp = red + (((k_warp - 1) * N_WARPS + n_warp) * 32) * kPerLane;
#pragma unroll
        for (int mb = 0; mb < MB8; ++mb)
#pragma unroll
          for (int j = 0; j < 4; ++j)
            *reinterpret_cast<float4*>(&dstp[((mb * 4 + j) * 32 + lane) * 4]) =
                make_float4(acc[mb][j][0], acc[mb][j][1], acc[mb][j][2], acc[mb][j][3]);
      }
      sync();
      if (k_warp == 0) {
#pragma unroll
        for (int kw = 1; kw < kKWarps; ++kw) {
          const float* srcp = red + (((kw - 1) * N_WARPS + n_warp) * 32) * kPerLane;
#pragma unroll
          for (int mb = 0; mb < MB8; ++mb)
#pragma unroll
            for (int j = 0; j < 4; ++j) {
              const float4 v = *reinterpret_cast<const float4*>(&srcp[((mb * 4 + j) * 32 + lane) * 4]);
              acc[mb][j][0] += v.x;
              acc[mb][j][1] += v.y;
              acc[mb][j][2] += v.z;
              acc[mb][j][3] += v.w;
            }
        }
      }
      sync();
      // The producer may refill the stage now. (The copy engine writes it
      // through the async proxy after these generic-proxy accesses.)
      fence_proxy_async_shared();
      __syncwarp();
      if (lane == 0) mbar_arrive(&empty[last_stage]);
    }

    if constexpr (!GROUPED) out.scale_columns(acc, S, n_tile);

    if constexpr (kPush) {
      // The block's only slice; its stages are all consumed (the sync), so they take the exchange: this
      // block's own vectors in its sender slot (see the push exchange after the loop).
      sync();
      if (k_warp == 0) {
#pragma unroll
        for (int v = 0; v < kPushVecs; ++v)
          st_shared_f4(push_slot(rank, v), acc[v / 4][v % 4][0], acc[v / 4][v % 4][1], acc[v / 4][v % 4][2],
                       acc[v / 4][v % 4][3]);
      }
      tile += slice_tiles;
    } else if constexpr (CLUSTERED) {
      // The block's only slice. Its stages are all consumed (the sync: by
      // every warp), so stage 0's memory takes the exchange.
      sync();
      out.cluster_store(acc, reinterpret_cast<float4*>(smem));
      tile += slice_tiles;
    } else if constexpr (chained) {
      out.chain(acc, n_tile, slice_idx, slice_count);
      tile += slice_tiles;
    } else {
      const bool shared_column = slice_count > 1;
      const int arrived = out.arrive(acc, n_tile, shared_column);
      TRIRUN_TRACE_AT(3);
      if (pending.slices > 0) out.resolve(pending, pending_arrived, last_arrival);
      pending = shared_column ? SmallPending{n_tile, first_block, last_block, slice_count} : SmallPending{};
      pending_arrived = arrived;
      // Thread 0 rewrites last_arrival in the next resolve.
      sync();
      tile += slice_tiles;
    }
  }
  TRIRUN_TRACE_AT(4);
  if constexpr (kPush) {
    // The push exchange: vector v of the column's sums belongs to block v % ranks, which adds up all blocks'
    // copies of it in rank order (as cluster_sum does) and writes its outputs. After one barrier (every block's
    // stages are free for the exchange; relaxed: nothing written before it is read after it by another block),
    // each block pushes the vectors it does not own into their owner's slot for it, with st.async, which counts
    // their bytes on the owner's push_bar; a block waits only for the bytes of its own vectors, then exits.
    // Against cluster_sum (a release barrier, remote loads, a second barrier: 1.8-2.1 us of a 3072 x 3072 call
    // at m = 1) this is one barrier and one-way stores: BitNet set (H100, graph) at m = 1 / 16 / 32
    // 21.2 / 28.0 / 38.8 -> 19.2 / 24.7 / 36.5 us, TriLM 30.5 / 39.1 / 48.3 -> 29.9 / 37.9 / 46.7 (its o layer).
    if (first_tile == end_tile && k_warp == 0) {  // no tiles (the dispatcher avoids it): zeros
#pragma unroll
      for (int v = 0; v < kPushVecs; ++v) st_shared_f4(push_slot(rank, v), 0.0f, 0.0f, 0.0f, 0.0f);
    }
    int owned = 0;
    for (int v = rank; v < kPushVecs; v += ranks) ++owned;
    if (threadIdx.x == 0) mbar_arrive_expect_tx(push_bar, (ranks - 1) * owned * kPushLanes * 16);
    cluster_sync_relaxed();
    if (k_warp == 0) {
      const uint32_t bar = shared_address(push_bar);
#pragma unroll
      for (int v = 0; v < kPushVecs; ++v) {
        const int owner = v % ranks;
        if (owner != rank) st_async_f4(cluster_address(push_slot(rank, v), owner), ld_shared_f4(push_slot(rank, v)),
                                       cluster_address(bar, owner));
      }
      if (owned > 0) {
        mbar_wait(push_bar, 0);
        float sum[MB8][4][4] = {};
#pragma unroll
        for (int v = 0; v < kPushVecs; ++v) {
          if (v % ranks != rank) continue;
          for (int src = 0; src < ranks; ++src) {
            const float4 x = ld_shared_f4(push_slot(src, v));
            sum[v / 4][v % 4][0] += x.x;
            sum[v / 4][v % 4][1] += x.y;
            sum[v / 4][v % 4][2] += x.z;
            sum[v / 4][v % 4][3] += x.w;
          }
        }
        out.for_each_output(cluster_column, [&](int mb, int e, int j, int h, size_t idx) {
          if ((mb * 4 + j) % ranks == rank) out.c_half[idx] = __float2half_rn(sum[mb][j][2 * h + e]);
        });
      }
    }
  } else if constexpr (CLUSTERED) {
    if (first_tile == end_tile) {  // no tiles (the dispatcher avoids it): zeros
      const float zero[MB8][4][4] = {};
      out.cluster_store(zero, reinterpret_cast<float4*>(smem));
    }
    cluster_sync();  // every block's sums are in its shared memory
    out.cluster_sum(smem_u32, cluster_column, rank, ranks);
    cluster_sync_relaxed();  // and read (the sums used them): the blocks may exit
  } else if constexpr (!chained) {
    if (pending.slices > 0) out.resolve(pending, pending_arrived, last_arrival);
  }
  TRIRUN_TRACE_AT(5);
#endif  // TRIRUN_WGMMA
}

// ------------------------------------------------------------------ dispatch

constexpr int kMaxDevices = 64;
constexpr int kMaxCluster = 8;  // blocks per thread-block cluster: the portable limit
static_assert(kMaxCluster <= 8, "the push exchange (trirun_small_tma_kernel) sizes slots for 8 senders");

// Device attributes, read once per device: querying them on every call would
// put host latency between a caller's event and the launch.
struct DeviceAttrs {
  int sms = 0;
  int smem_optin = 0;
  bool pdl = false;     // programmatic dependent launch: sm_90+, unless TRIRUN_PDL=0
  bool hopper = false;  // the wgmma kernel: built for sm_90a and running on sm_90, unless TRIRUN_HOPPER=0
  bool small_tma = false;  // the small-batch kernel fed by TMA: sm_90 as for `hopper`, unless TRIRUN_SMALL_TMA=0
  int ramp = 2;            // start-up ramp of the TMA small-batch kernel (0: doubling); TRIRUN_RAMP=n
  int early = 1;           // TMA kernels: tiles of weights requested before griddepcontrol.wait; TRIRUN_EARLY=n
  bool narrow_hopper = true;  // 17..32 rows of narrow layers on the Hopper kernel; TRIRUN_NARROW_HOPPER=0: small
  bool shallow_hopper = true;  // and of layers 3072..4096 deep whatever their width; TRIRUN_SHALLOW_HOPPER=0: off
  bool narrow_32 = true;      // 33..64 rows of narrow layers with few tiles on 32-row slices; TRIRUN_NARROW_32=0: off
  bool hopper_slots = true;   // 33..64 rows of layers at most 4096 wide as one 64-row slice whose split columns sum
                              // through slots (instead of narrow_32's and the lock chain); TRIRUN_HOPPER_SLOTS=0: off
  bool aligned_runs = true;   // those launches on fewer blocks where runs one tile longer divide the column
                              // (hopper_aligned_blocks); TRIRUN_HOPPER_ALIGNED_RUNS=0: off
  bool hopper_wide = false;   // experiment, off: Hopper launches of 64-row slices on three consumer warpgroups and
                              // 192-column tiles (the kernel's WGS = 3); TRIRUN_EXP_HOPPER_WIDE=1
  int few_tile_slices = 1;  // 256-row Hopper slices halved where they give few tiles per block; TRIRUN_FEW_TILE_SLICES:
                            // 0 off, 2 (experiment, measured mixed) 128-row ones too
  bool narrow_slices = true;  // 64-row Hopper slices on narrow layers to 192 rows; TRIRUN_NARROW_SLICES=0: off
  bool short_wide = true;     // 256-row Hopper slices from 129 rows; TRIRUN_SHORT_WIDE=0: from 256
  bool tail_split = true;     // a partial last Hopper slice in a launch of its own; TRIRUN_TAIL_SPLIT=0: off
  bool slice32 = true;        // Hopper launches of <= 32 rows on 32-row slices; TRIRUN_SLICE32=0: 64-row
  bool small_tail = true;     // a Hopper call's last <= 16 rows (<= 32 if k >= 8192) on the small-batch kernel; TRIRUN_SMALL_TAIL=0
  bool mid_slices = true;     // 129..224 rows as one slice of the rows rounded up to 16; TRIRUN_MID_SLICES=0: off
  int wide_min_tiles = 64;    // 256-row slices from m = 256 where they give this many output tiles; TRIRUN_WIDE_MIN_TILES (experiment)
                              // (H200, run 106: 16 made the 3072/4096-wide layers 1.5-1.9x slower at m = 256..384)
  bool mid_pairs = true;      // 257..448 rows as two equal mid slices in one launch; TRIRUN_MID_PAIRS=0: off
  int mid_pairs_min_tiles = 48;  // column-slices (2 x 128-column tiles) they need; TRIRUN_MID_PAIRS_MIN_TILES
  bool mid_tails = true;      // the same for a later launch's 129..224 rows (m = 385..480); TRIRUN_MID_TAILS=0: off
  bool narrow_128 = false;    // experiment, off: 257..512 rows of layers with k, n <= 3072 as 128-row slices in one launch; TRIRUN_NARROW_128=1
  bool balance_launches = true;  // a Hopper call's slices spread evenly over its launches; TRIRUN_BALANCE_LAUNCHES=0: off
  int hopper_l2_mb = 24;         // activation slices per Hopper launch, at most this many MiB; TRIRUN_HOPPER_L2_MB (experiment)
                                 // (H100, session 23: 36 made the 70B set 7% and the 7B set 5% slower at m = 2048..4096)
  int small_clusters = 2;     // TMA small-batch kernel in clusters, a column per cluster (see launch_small_tma); TRIRUN_SMALL_CLUSTERS:
                              // 0 never, 1 where the striped schedule would sum through slots, 2 also where it would chain
  int small_cluster_chain_min = -1;  // a chain replaced only by clusters of at least this many blocks (unless a size is
                                     // forced); TRIRUN_SMALL_CLUSTER_CHAIN_MIN; -1: 2 where the launch sums by the
                                     // push exchange, else 3 (see small_launch_cluster)
  int small_cluster_slack = 2;  // clusters whose runs are up to this many tiles longer than the striped schedule's,
                                // where they sum by the push exchange (see cluster_size_for); TRIRUN_SMALL_CLUSTER_SLACK
  int small_cluster_size = 0;  // experiments: blocks per cluster forced (2..8) where possible; TRIRUN_SMALL_CLUSTER_SIZE
  int small_whole_columns = 2;  // an unclustered TMA small-batch launch of up to 16 rows as one block per column where
                                // that run is at most this many tiles longer than the striped one's (no column split,
                                // no slots; see launch_small_tma); TRIRUN_SMALL_WHOLE_COLUMNS (0: off)
  bool narrow_clusters = true;  // 17..32 rows of narrow layers kept on the small-batch kernel where its launch would
                                // be clustered with balanced runs; TRIRUN_NARROW_CLUSTERS=0: off
#ifdef TRIRUN_DISPATCH_RECORD
  int record_resident[kMaxCluster + 1] = {};  // clusters of each size resident at once, as the test sets them
#endif
};
PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder();  // below, with the Hopper launch

// A TRIRUN_* switch set to 0 (its value starts with '0'): the path it names is turned off.
bool switched_off(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && value[0] == '0';
}
// A TRIRUN_* number: `fallback` unless the variable holds an integer >= `least`.
int env_int(const char* name, int least, int fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && std::atoi(value) >= least ? std::atoi(value) : fallback;
}

// The dispatcher's TRIRUN_* switches and experiments from the environment (sm_90 builds; also
// tools/dispatch-check.cu's --plans, so that it plans what the real build would launch).
void apply_env_switches(DeviceAttrs& a) {
  a.ramp = env_int("TRIRUN_RAMP", 0, a.ramp);
  a.early = env_int("TRIRUN_EARLY", 1, a.early);
  a.narrow_hopper = !switched_off("TRIRUN_NARROW_HOPPER");
  a.shallow_hopper = !switched_off("TRIRUN_SHALLOW_HOPPER");
  a.narrow_32 = !switched_off("TRIRUN_NARROW_32");
  a.hopper_slots = !switched_off("TRIRUN_HOPPER_SLOTS");
  a.aligned_runs = !switched_off("TRIRUN_HOPPER_ALIGNED_RUNS");
  a.hopper_wide = env_int("TRIRUN_EXP_HOPPER_WIDE", 0, 0) != 0;
  a.few_tile_slices = env_int("TRIRUN_FEW_TILE_SLICES", 0, a.few_tile_slices);
  a.narrow_slices = !switched_off("TRIRUN_NARROW_SLICES");
  a.short_wide = !switched_off("TRIRUN_SHORT_WIDE");
  a.tail_split = !switched_off("TRIRUN_TAIL_SPLIT");
  a.slice32 = !switched_off("TRIRUN_SLICE32");
  a.mid_slices = !switched_off("TRIRUN_MID_SLICES");
  a.mid_tails = !switched_off("TRIRUN_MID_TAILS");
  a.mid_pairs = !switched_off("TRIRUN_MID_PAIRS");
  a.mid_pairs_min_tiles = env_int("TRIRUN_MID_PAIRS_MIN_TILES", 1, a.mid_pairs_min_tiles);
  a.wide_min_tiles = env_int("TRIRUN_WIDE_MIN_TILES", 1, a.wide_min_tiles);
  a.small_tail = !switched_off("TRIRUN_SMALL_TAIL");
  a.narrow_128 = env_int("TRIRUN_NARROW_128", 1, 0) != 0;
  a.balance_launches = !switched_off("TRIRUN_BALANCE_LAUNCHES");
  a.hopper_l2_mb = env_int("TRIRUN_HOPPER_L2_MB", 1, a.hopper_l2_mb);
  a.small_clusters = env_int("TRIRUN_SMALL_CLUSTERS", 0, a.small_clusters);
  a.small_cluster_chain_min = env_int("TRIRUN_SMALL_CLUSTER_CHAIN_MIN", 0, a.small_cluster_chain_min);  // 0, 1: none
  a.small_cluster_slack = env_int("TRIRUN_SMALL_CLUSTER_SLACK", 0, a.small_cluster_slack);
  a.small_whole_columns = env_int("TRIRUN_SMALL_WHOLE_COLUMNS", 0, a.small_whole_columns);
  const int cluster_size = env_int("TRIRUN_SMALL_CLUSTER_SIZE", 2, 0);
  a.small_cluster_size = cluster_size <= kMaxCluster ? cluster_size : 0;
  a.narrow_clusters = !switched_off("TRIRUN_NARROW_CLUSTERS");
}

#ifdef TRIRUN_DISPATCH_RECORD
// Dispatch-record build (tools/dispatch-check.cu, CPU only): the dispatcher sees the attributes the
// test sets and its launches are recorded instead of run (see record_launch below).
DeviceAttrs g_record_attrs;
#endif

cudaError_t device_attrs(int device, DeviceAttrs* out) {
#ifdef TRIRUN_DISPATCH_RECORD
  (void)device;
  *out = g_record_attrs;
  return cudaSuccess;
#endif
  // Filled once per device under a lock (Node worker threads share this library): a thread that
  // sees `ready` set reads a whole struct, never one another thread is still writing.
  static DeviceAttrs cache[kMaxDevices];
  static std::atomic<bool> ready[kMaxDevices];
  static std::mutex filling;
  if (device < 0 || device >= kMaxDevices) return cudaErrorInvalidDevice;
  if (!ready[device].load(std::memory_order_acquire)) {
    std::lock_guard<std::mutex> lock(filling);
    if (ready[device].load(std::memory_order_relaxed)) {
      *out = cache[device];
      return cudaSuccess;
    }
    DeviceAttrs a;
    cudaError_t err = cudaDeviceGetAttribute(&a.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
    if (err == cudaSuccess) err = cudaDeviceGetAttribute(&a.sms, cudaDevAttrMultiProcessorCount, device);
    int major = 0, minor = 0;
    if (err == cudaSuccess) err = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
    if (err == cudaSuccess) err = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device);
    a.pdl = major >= 9 && !switched_off("TRIRUN_PDL");
#ifdef TRIRUN_HAVE_SM90A
    // sm_90a code runs on compute capability 9.0 only (not on later GPUs).
    const bool sm90 = major == 9 && minor == 0 && tensor_map_encoder() != nullptr;
    a.hopper = sm90 && !switched_off("TRIRUN_HOPPER");
    a.small_tma = sm90 && !switched_off("TRIRUN_SMALL_TMA");
    apply_env_switches(a);
#endif
    if (err != cudaSuccess) return err;
    cache[device] = a;
    ready[device].store(true, std::memory_order_release);
  }
  *out = cache[device];
  return cudaSuccess;
}

// Raises a kernel's dynamic shared-memory limit once per device.
// `configured` is a per-kernel static of the caller (one per instantiation).
template <typename Kernel>
cudaError_t ensure_smem(Kernel kernel, int device, size_t smem, int (&configured)[kMaxDevices]) {
  if (configured[device] >= static_cast<int>(smem)) return cudaSuccess;
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  if (err == cudaSuccess) configured[device] = static_cast<int>(smem);
  return err;
}

struct Launch {
  const void* A;
  const void* B;
  const void* s;
  void* C;
  int m, n, k;
  int* locks;
  bool pdl;        // small-batch and Hopper kernels: launched as programmatic dependents (sm_90, not the legacy stream)
  bool small_tma;  // small-batch kernel: the TMA-fed version (sm_90)
  int ramp;        // TMA small-batch kernel: start-up ramp (see the kernel)
  int early;       // TMA kernels: tiles of weights requested before waiting for the grid before
  int small_clusters;  // TMA small-batch kernel: clustered launches (DeviceAttrs::small_clusters)
  int small_cluster_chain_min;  // (DeviceAttrs::small_cluster_chain_min)
  int small_cluster_slack;      // (DeviceAttrs::small_cluster_slack)
  int small_whole_columns;      // (DeviceAttrs::small_whole_columns)
  bool hopper_slots;            // Hopper kernel, 64-row slices: split columns sum through slots (SLOTS)
  bool hopper_wide;             // Hopper kernel, 64-row slices: three consumer warpgroups (DeviceAttrs::hopper_wide)
  int small_cluster_size;  // and their size where forced (DeviceAttrs::small_cluster_size; 0: the rule)
  int cluster;         // blocks per thread-block cluster of this launch (0 or 1: none)
  float* partial;  // small-batch kernel: 16 x n fp32
  float* slots;    // general kernel: one 64 x 256 fp32 slot per shared column
  int blocks;
  int device;
  int smem_limit;
  cudaStream_t stream;
  int stages;   // out
  int threads;  // out
  int clustered_blocks;  // out: blocks of a clustered or whole-column launch (0: a launch of `blocks`)
};

#ifdef TRIRUN_DISPATCH_RECORD
// What the dispatcher asked for, launch by launch: kind 0 general, 1 small-batch, 2 Hopper; `height`
// is the Hopper slice's rows (wgmma N) or the other kernels' 16-/8-row blocks.
struct RecordedLaunch {
  int kind;
  const void* A;
  int rows, height, thread_k, thread_n, blocks;
  bool grouped;
};
std::vector<RecordedLaunch> g_recorded;
cudaError_t record_launch(int kind, int height, int thread_k, int thread_n, bool grouped, Launch& l) {
  g_recorded.push_back(RecordedLaunch{kind, l.A, l.m, height, thread_k, thread_n, l.blocks, grouped});
  l.stages = 0;
  l.threads = 0;
  return cudaSuccess;
}
#endif

// General kernel -------------------------------------------------------------

template <int M_BLOCKS>
constexpr int kGeneralStages = M_BLOCKS == 1 ? 8 : 4;

template <int M_BLOCKS, int K_BLOCKS, int N_BLOCKS, bool GROUPED>
cudaError_t launch_general(Launch& l) {
  constexpr int stages = kGeneralStages<M_BLOCKS>;
  constexpr size_t stage = (M_BLOCKS * 16 * K_BLOCKS * 16 * 2) + (K_BLOCKS * N_BLOCKS * 16 * 4) + N_BLOCKS * 16 * 2;
  constexpr int n_warps = N_BLOCKS / 4;
  constexpr size_t reduce = static_cast<size_t>(8 / n_warps - 1) * n_warps * 32 * 32 * 4;
  constexpr size_t smem = stages * stage > reduce ? stages * stage : reduce;
  auto kernel = trirun_kernel<M_BLOCKS, K_BLOCKS, N_BLOCKS, stages, GROUPED>;
  if (static_cast<int>(smem) > l.smem_limit) return cudaErrorInvalidConfiguration;
  static int configured[kMaxDevices] = {};
  cudaError_t err = ensure_smem(kernel, l.device, smem, configured);
  if (err != cudaSuccess) return err;
  l.stages = stages;
  l.threads = kThreads;
  kernel<<<l.blocks, kThreads, smem, l.stream>>>(static_cast<const int4*>(l.A), static_cast<const int4*>(l.B),
                                                 static_cast<const int4*>(l.s), static_cast<int4*>(l.C), l.m, l.n, l.k,
                                                 l.locks, l.slots);
  return cudaGetLastError();
}

template <int M_BLOCKS, bool GROUPED>
cudaError_t general_tile(int thread_k, int thread_n, Launch& l) {
  if (thread_k == 128 && thread_n == 128) return launch_general<M_BLOCKS, 8, 8, GROUPED>(l);
  return launch_general<M_BLOCKS, 4, 16, GROUPED>(l);  // 64 x 256
}

#ifdef TRIRUN_DISPATCH_RECORD
template <bool GROUPED>
cudaError_t general_m(int m_blocks, int thread_k, int thread_n, Launch& l) {
  return record_launch(0, m_blocks > 4 ? 4 : m_blocks, thread_k, thread_n, GROUPED, l);
}
#else
template <bool GROUPED>
cudaError_t general_m(int m_blocks, int thread_k, int thread_n, Launch& l) {
  switch (m_blocks) {
    case 1:
      return general_tile<1, GROUPED>(thread_k, thread_n, l);
    case 2:
      return general_tile<2, GROUPED>(thread_k, thread_n, l);
    case 3:
      return general_tile<3, GROUPED>(thread_k, thread_n, l);
    default:
      return general_tile<4, GROUPED>(thread_k, thread_n, l);
  }
}
#endif

// Hopper kernel ---------------------------------------------------------------

// cuTensorMapEncodeTiled from the driver, looked up once (the addon links no
// CUDA driver library); null where the driver does not have it.
PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &found) !=
            cudaSuccess ||
        found != cudaDriverEntryPointSuccess)
      p = nullptr;
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
  }();
  return fn;
}

// A 2-D tensor map over a row-major (rows, cols) matrix; box (box_cols, box_rows).
cudaError_t encode_map_2d(CUtensorMap* map, CUtensorMapDataType type, int elem_bytes, const void* base, int rows,
                          int cols, int box_rows, int box_cols, CUtensorMapSwizzle swizzle) {
  PFN_cuTensorMapEncodeTiled_v12000 encode = tensor_map_encoder();
  if (encode == nullptr) return cudaErrorNotSupported;
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(cols), static_cast<cuuint64_t>(rows)};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(cols) * elem_bytes};
  const cuuint32_t box[2] = {static_cast<cuuint32_t>(box_cols), static_cast<cuuint32_t>(box_rows)};
  const cuuint32_t elem_strides[2] = {1, 1};
  const CUresult r = encode(map, type, 2, const_cast<void*>(base), dims, strides, box, elem_strides,
                            CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                            CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

// The launch attribute of thread-block clusters of `size` blocks along x.
cudaLaunchAttribute cluster_attribute(int size) {
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeClusterDimension;
  attr.val.clusterDim.x = static_cast<unsigned>(size);
  attr.val.clusterDim.y = 1;
  attr.val.clusterDim.z = 1;
  return attr;
}

// How many clusters of `size` blocks of `kernel` fit on the current device at once; 0 where the query
// refuses the size (e.g. one the device cannot co-schedule), leaving no error behind.
template <typename Kernel>
int clusters_resident(Kernel kernel, int size, int threads, size_t smem) {
  cudaLaunchConfig_t config{};
  cudaLaunchAttribute attr = cluster_attribute(size);
  config.gridDim = dim3(size);
  config.blockDim = dim3(threads);
  config.dynamicSmemBytes = smem;
  config.attrs = &attr;
  config.numAttrs = 1;
  int clusters = 0;
  if (cudaOccupancyMaxActiveClusters(&clusters, kernel, &config) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return clusters;
}

// Launches a small-batch or Hopper kernel as a programmatic dependent of the
// kernel before it where l.pdl says so (sm_90, not the legacy stream), else
// plainly.
template <typename... Params, typename... Args>
cudaError_t launch_dependent(const Launch& l, void (*kernel)(Params...), int threads, size_t smem, Args... args) {
  cudaLaunchConfig_t config{};
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  config.gridDim = dim3(l.blocks);
  config.blockDim = dim3(threads);
  config.dynamicSmemBytes = smem;
  config.stream = l.stream;
  cudaLaunchAttribute attrs[2] = {attr, {}};
  int count = l.pdl ? 1 : 0;
  if (l.cluster > 1) attrs[count++] = cluster_attribute(l.cluster);
  config.attrs = attrs;
  config.numAttrs = count;
  return cudaLaunchKernelEx(&config, kernel, args...);
}

// A Hopper launch of n_act-row slices runs on three consumer warpgroups (192-column tiles) under the
// experiment TRIRUN_EXP_HOPPER_WIDE=1 (64-row slices only), else on two (128-column tiles).
inline bool hopper_wide_launch(const Launch& l, int n_act) { return l.hopper_wide && n_act == 64; }
inline int hopper_launch_tile_n(const Launch& l, int n_act) {
  return hopper_wide_launch(l, n_act) ? hopper_tile_n<3>() : hopper_tile_n<2>();
}

template <int N_ACT, bool GROUPED, bool SLOTS = false, int WGS = 2>
cudaError_t launch_hopper(Launch& l) {
  constexpr int tile_n = hopper_tile_n<WGS>();
  constexpr size_t stage = N_ACT * kHopperTileK * 2 + (kHopperTileK / 16) * tile_n * 4 + tile_n * 2;
  // Three warpgroups stage C in a buffer of their own (the kernel's kOwnC).
  constexpr size_t c_bytes = WGS > 2 ? N_ACT * tile_n * 2 : 0;
  // As many stages as the 227 KB of shared memory hold, at most 8: 8 up to 64 rows, 6 for 128, 5 for 144
  // and 160, 4 for 176..208, 3 for 224 and 256.
  constexpr int fit = (227 * 1024 - 1024 - static_cast<int>(c_bytes)) / (static_cast<int>(stage) + 16);
  constexpr int stages = fit < 8 ? fit : 8;
  // + two mbarriers per stage, + alignment of the swizzled stages
  constexpr size_t smem = stages * stage + c_bytes + stages * 16 + 1024;
  constexpr int threads = hopper_threads<WGS>();
  auto kernel = trirun_hopper_kernel<N_ACT, stages, GROUPED, SLOTS, WGS>;
  if (static_cast<int>(smem) > l.smem_limit) return cudaErrorInvalidConfiguration;
  static int configured[kMaxDevices] = {};
  cudaError_t err = ensure_smem(kernel, l.device, smem, configured);
  if (err != cudaSuccess) return err;
  // Activations (l.m, k) fp16 in boxes of N_ACT rows x 64 (one swizzle atom);
  // packed weights (k / 16, n) int32 in boxes of 8 x tile_n; scales (k / 128, n)
  // fp16 in boxes of 1 x tile_n (grouped only).
  // C (l.m, n) fp16 in boxes of N_ACT rows x 64, the 128-byte swizzle (the kernel's tensor stores).
  CUtensorMap map_a, map_b, map_s, map_c;
  err = encode_map_2d(&map_a, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 2, l.A, l.m, l.k, N_ACT, 64,
                      CU_TENSOR_MAP_SWIZZLE_128B);
  if (err == cudaSuccess)
    err = encode_map_2d(&map_c, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 2, l.C, l.m, l.n, N_ACT, 64,
                        CU_TENSOR_MAP_SWIZZLE_128B);
  if (err == cudaSuccess)
    err = encode_map_2d(&map_b, CU_TENSOR_MAP_DATA_TYPE_INT32, 4, l.B, l.k / 16, l.n, kHopperTileK / 16, tile_n,
                        CU_TENSOR_MAP_SWIZZLE_NONE);
  if (err == cudaSuccess)
    err = encode_map_2d(&map_s, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 2, l.s, GROUPED ? l.k / 128 : 1, l.n, 1, tile_n,
                        CU_TENSOR_MAP_SWIZZLE_NONE);
  if (err != cudaSuccess) return err;
  l.stages = stages;
  l.threads = threads;
  return launch_dependent(l, kernel, threads, smem, map_a, map_b, map_s, map_c, static_cast<const int4*>(l.s), l.m,
                          l.n, l.k, l.locks, l.slots, l.early);
}

#ifdef TRIRUN_DISPATCH_RECORD
template <int... Ns>
cudaError_t launch_hopper_rows(int n_act, bool grouped, Launch& l) {
  // The instances that exist: n_act must be one of Ns, else the real dispatcher would run the last one.
  const bool known = ((n_act == Ns) || ...);
  return record_launch(2, known ? n_act : -n_act, kHopperTileK, hopper_launch_tile_n(l, n_act), grouped, l);
}
#else
// The Hopper kernel instance whose slice height is n_act, one of Ns (the last one takes any other value);
// 64-row slices with l.hopper_slots sum split columns through slots (SLOTS), and with l.hopper_wide run on
// three consumer warpgroups (experiment).
template <int N, int... Rest>
cudaError_t launch_hopper_rows(int n_act, bool grouped, Launch& l) {
  if constexpr (sizeof...(Rest) > 0)
    if (n_act != N) return launch_hopper_rows<Rest...>(n_act, grouped, l);
  if constexpr (N == 64) {
    if (hopper_wide_launch(l, n_act)) {
      if (l.hopper_slots) return grouped ? launch_hopper<N, true, true, 3>(l) : launch_hopper<N, false, true, 3>(l);
      return grouped ? launch_hopper<N, true, false, 3>(l) : launch_hopper<N, false, false, 3>(l);
    }
    if (l.hopper_slots) return grouped ? launch_hopper<N, true, true>(l) : launch_hopper<N, false, true>(l);
  }
  return grouped ? launch_hopper<N, true>(l) : launch_hopper<N, false>(l);
}
#endif

// Small-batch kernel -----------------------------------------------------------

// Pipeline depth: as deep as fits in `budget` bytes of shared memory, 2..8.
template <int MB8, int N_WARPS, int THREADS, bool GROUPED>
constexpr size_t small_stage_bytes() {
  constexpr int k_warps = THREADS / 32 / N_WARPS;
  constexpr int tk = 128 * k_warps, tn = N_WARPS * 64;
  return MB8 * 8 * tk * 2 + tk / 16 * tn * 4 + (GROUPED ? k_warps * tn * 2 : 0);
}
constexpr int stages_within(size_t stage, size_t budget) {
  return budget / stage >= 8 ? 8 : (budget / stage >= 2 ? static_cast<int>(budget / stage) : 2);
}

// The reduction of the blocks that share a column (see the kernel's end): a
// lock chain when runs are long enough that a column has at most about three
// blocks, which reach it at different times; last-arriver slots when runs are
// short and a column's blocks finish together. Measured on the H100: slots
// take 4096 x 4096 (m = 1) from 17.6 to 12.6 us and 11008 x 4096 from 21.2 to
// 17.0 us; the chain keeps the large layers ~10% faster (NOTES.md).
// TRIRUN_SMALL_REDUCTION=1 or 2 at compile time forces one (experiments).
bool small_chained(const Launch& l, int thread_k, int thread_n) {
#if defined(TRIRUN_SMALL_REDUCTION) && TRIRUN_SMALL_REDUCTION == 1
  (void)l, (void)thread_k, (void)thread_n;
  return true;
#elif defined(TRIRUN_SMALL_REDUCTION) && TRIRUN_SMALL_REDUCTION == 2
  (void)l, (void)thread_k, (void)thread_n;
  return false;
#else
  const int k_tiles = ceil_div(l.k, thread_k);
  const int iters = ceil_div(k_tiles * (l.n / thread_n), l.blocks);
  return k_tiles < 3 * iters;
#endif
}

template <int MB8, int N_WARPS, int STAGES, int THREADS, bool GROUPED, bool CHAINED>
cudaError_t launch_small_reduction(Launch& l) {
  constexpr int k_warps = THREADS / 32 / N_WARPS;
  constexpr size_t stage = small_stage_bytes<MB8, N_WARPS, THREADS, GROUPED>();
  constexpr size_t reduce = static_cast<size_t>(k_warps - 1) * N_WARPS * 32 * MB8 * 16 * 4;
  constexpr size_t smem = STAGES * stage > reduce ? STAGES * stage : reduce;
  auto kernel = trirun_small_kernel<MB8, N_WARPS, STAGES, THREADS, GROUPED, CHAINED>;
  if (static_cast<int>(smem) > l.smem_limit) return cudaErrorInvalidConfiguration;
  static int configured[kMaxDevices] = {};
  cudaError_t err = ensure_smem(kernel, l.device, smem, configured);
  if (err != cudaSuccess) return err;
  l.stages = STAGES;
  l.threads = THREADS;
  return launch_dependent(l, kernel, THREADS, smem, static_cast<const int4*>(l.A), static_cast<const int4*>(l.B),
                          static_cast<const int4*>(l.s), static_cast<int4*>(l.C), l.m, l.n, l.k, l.locks, l.partial,
                          l.slots);
}

template <int MB8, int N_WARPS, int STAGES, int THREADS, bool GROUPED>
cudaError_t launch_small_stages(Launch& l) {
  constexpr int k_warps = THREADS / 32 / N_WARPS;
  return small_chained(l, 128 * k_warps, N_WARPS * 64) ? launch_small_reduction<MB8, N_WARPS, STAGES, THREADS, GROUPED, true>(l)
                 : launch_small_reduction<MB8, N_WARPS, STAGES, THREADS, GROUPED, false>(l);
}

// Depth by shared memory: 99 KB on sm_86/sm_89 (and sm_80's 163 KB) takes
// a 2..4-stage pipeline; Hopper's 227 KB takes up to 8 stages, which is what
// it takes to keep enough bytes in flight per SM for HBM3. (Two blocks per
// SM with registers capped at 128 and half the stages each measured slower
// on every Llama shape but one: NOTES.md.)
template <int MB8, int N_WARPS, bool GROUPED>
cudaError_t launch_small(Launch& l) {
  constexpr size_t stage = small_stage_bytes<MB8, N_WARPS, 256, GROUPED>();
  constexpr int shallow = stages_within(stage, 99 * 1024) > 4 ? 4 : stages_within(stage, 99 * 1024);
  constexpr int deep = stages_within(stage, 220 * 1024);
  if (l.smem_limit >= static_cast<int>(deep * stage) && deep > shallow)
    return launch_small_stages<MB8, N_WARPS, deep, 256, GROUPED>(l);
  return launch_small_stages<MB8, N_WARPS, shallow, 256, GROUPED>(l);
}

// The TMA-fed version (sm_90): same tiles and reduction rule; the stage that
// ends a run doubles as the k_warps' reduction buffer, so the depth is the
// same as trirun_small_kernel's on Hopper.
template <int MB8, int N_WARPS, bool GROUPED>
constexpr int small_tma_stages() {
  return stages_within(small_stage_bytes<MB8, N_WARPS, 256, GROUPED>(), 220 * 1024);
}
template <int MB8, int N_WARPS, bool GROUPED>
constexpr size_t small_tma_smem() {
  constexpr int stages = small_tma_stages<MB8, N_WARPS, GROUPED>();
  // + the full and empty mbarriers and the push exchange's
  return stages * small_stage_bytes<MB8, N_WARPS, 256, GROUPED>() + 1024 + (2 * stages + 1) * sizeof(uint64_t);
}

// `cluster` > 1: a clustered launch (CLUSTERED), a cluster of that many blocks per column.
template <int MB8, int N_WARPS, bool GROUPED, bool CHAINED, bool CLUSTERED>
cudaError_t launch_small_tma_reduction(Launch& l, int cluster = 1) {
  constexpr int k_warps = 8 / N_WARPS;
  constexpr int thread_k = 128 * k_warps, thread_n = N_WARPS * 64;
  constexpr int stages = small_tma_stages<MB8, N_WARPS, GROUPED>();
  constexpr size_t smem = small_tma_smem<MB8, N_WARPS, GROUPED>();
  auto kernel = trirun_small_tma_kernel<MB8, N_WARPS, stages, GROUPED, CHAINED, CLUSTERED>;
  if (static_cast<int>(smem) > l.smem_limit) return cudaErrorInvalidConfiguration;
  static int configured[kMaxDevices] = {};
  cudaError_t err = ensure_smem(kernel, l.device, smem, configured);
  if (err != cudaSuccess) return err;
  // Activations (m, k) fp16 in boxes of 8 MB8 rows x 64 (one swizzle atom);
  // packed weights (k / 16, n) and scales (k / 128, n) as 8-byte elements,
  // one box per tile (a 512-column row of words would exceed 256 elements).
  CUtensorMap map_a, map_b, map_s{};
  err = encode_map_2d(&map_a, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 2, l.A, l.m, l.k, MB8 * 8, 64,
                      CU_TENSOR_MAP_SWIZZLE_128B);
  if (err == cudaSuccess)
#if defined(TRIRUN_COPY_ONLY) && TRIRUN_COPY_ONLY == 2
    // Experiment: B as rows of 2 KB, a tile's weights as kBBytes / 2048 consecutive rows.
    err = encode_map_2d(&map_b, CU_TENSOR_MAP_DATA_TYPE_UINT64, 8, l.B, l.k / 16 * l.n * 4 / 2048, 256,
                        thread_k / 16 * thread_n * 4 / 2048, 256, CU_TENSOR_MAP_SWIZZLE_NONE);
#else
    err = encode_map_2d(&map_b, CU_TENSOR_MAP_DATA_TYPE_UINT64, 8, l.B, l.k / 16, l.n / 2, thread_k / 16,
                        thread_n / 2, CU_TENSOR_MAP_SWIZZLE_NONE);
#endif
  if (err == cudaSuccess && GROUPED)
    err = encode_map_2d(&map_s, CU_TENSOR_MAP_DATA_TYPE_UINT64, 8, l.s, l.k / 128, l.n / 4, k_warps, thread_n / 4,
                        CU_TENSOR_MAP_SWIZZLE_NONE);
  if (err != cudaSuccess) return err;
  l.stages = stages;
  l.threads = kSmallTmaThreads;
  Launch launch = l;
  if (CLUSTERED) {
    launch.cluster = cluster;
    launch.blocks = l.n / thread_n * cluster;
    l.clustered_blocks = launch.blocks;
  }
  return launch_dependent(launch, kernel, kSmallTmaThreads, smem, map_a, map_b, map_s, static_cast<const int4*>(l.s),
                          static_cast<int4*>(l.C), l.m, l.n, l.k, l.locks, l.partial, l.slots, l.ramp, l.early);
}

// Clustered launches of the TMA small-batch kernel: a column per cluster, its
// blocks splitting the column's k tiles, summed through distributed shared
// memory (the push exchange, or SmallOutput::cluster_sum) instead of through
// L2. The blocks per cluster: the fewest (2..8) whose runs are no longer than
// the striped schedule's, that leave no block without tiles, and whose
// clusters all fit on the GPU at once (one block per SM); 0 where there is
// none (long layers: more columns than SMs). Failing that, with `slack` > 0,
// the size with the shortest run (the fewest blocks among equal runs) if that
// run is at most `slack` tiles longer than the striped schedule's: a clustered
// column's end by the push exchange costs ~2.5 us less than the striped
// schedule's through L2 (slots or a chain), a tile ~0.6 us at m = 1 (H100,
// session 32, kernel-probe, graph, TriRun only, m = 1 / 16: 7B o 4096 x 4096
// 6.4 / 8.3 -> 5.2 / 6.6 us with clusters of 3 (runs of 3 against 2), down
// 11008 x 4096 10.9 / 13.4 -> 9.3 / 11.4 (of 3: 8 against 6), TriLM down
// 9216 x 3072 9.2 / 11.6 -> 6.9 / 8.8 (of 4: 5 against 4); runs 5 tiles longer
// lost: 7B down in clusters of 2 11.2 / 13.8, TriLM down 9.7 / 11.8).
// The rule, given how many clusters of a size fit at once (`resident(size)`).
// `forced` (2..8, experiments: TRIRUN_SMALL_CLUSTER_SIZE) takes that size
// wherever it is possible at all, whatever the runs' length.
template <typename Resident>
int cluster_size_for(int k_tiles, int n_tiles, int blocks, Resident&& resident, int forced = 0, int slack = 0) {
  const int striped_run = ceil_div(k_tiles * n_tiles, blocks);
  int best = 0, best_run = 0;
  for (int size = 2; size <= kMaxCluster; ++size) {
    if (forced > 0 && size != forced) continue;
    const int run = ceil_div(k_tiles, size);
    if ((size - 1) * run >= k_tiles || n_tiles * size > blocks || resident(size) < n_tiles) continue;
    if (forced > 0 || run <= striped_run) return size;
    if (run <= striped_run + slack && (best == 0 || run < best_run)) {
      best = size;
      best_run = run;
    }
  }
  return best;
}
// Whether a clustered launch of this instance sums by the push exchange: every block's vectors for
// kMaxCluster senders fit its stages (trirun_small_tma_kernel's kPush, which the kernel asserts).
template <int MB8, int N_WARPS, bool GROUPED>
constexpr bool small_push_fits() {
  return push_exchange_fits(MB8, N_WARPS, static_cast<long long>(small_tma_stages<MB8, N_WARPS, GROUPED>()) *
                                              small_stage_bytes<MB8, N_WARPS, 256, GROUPED>());
}
template <int MB8, int N_WARPS, bool GROUPED>
int small_cluster_size(const Launch& l) {
  constexpr int thread_k = 128 * (8 / N_WARPS), thread_n = N_WARPS * 64;
  const int slack = small_push_fits<MB8, N_WARPS, GROUPED>() ? l.small_cluster_slack : 0;
#ifdef TRIRUN_DISPATCH_RECORD
  // Dispatch-record builds: the residency the test sets instead of the occupancy query (and neither the
  // shared-memory check nor the no-query-inside-a-capture rule of the real build below).
  return cluster_size_for(ceil_div(l.k, thread_k), l.n / thread_n, l.blocks,
                          [](int size) { return g_record_attrs.record_resident[size]; }, l.small_cluster_size,
                          slack);
#else
  constexpr size_t smem = small_tma_smem<MB8, N_WARPS, GROUPED>();
  auto kernel = trirun_small_tma_kernel<MB8, N_WARPS, small_tma_stages<MB8, N_WARPS, GROUPED>(), GROUPED, false, true>;
  // Clusters of each size that fit at once, per device (-1: none), all sizes asked on the first call
  // (an eager call: a decoding step's graph is captured after one), so that no query runs inside a capture.
  // (Asked under a lock, `asked` set only once all sizes are known: worker threads share this.)
  // The caches are per kernel instance: the first call of an instance may come inside a graph
  // capture (a step captured at another batch size than the eager one). Then no query runs and
  // the launch keeps the striped schedule; the next eager call asks.
  static int resident[kMaxDevices][kMaxCluster + 1] = {};
  static std::atomic<bool> asked[kMaxDevices];
  static std::mutex asking;
  static int configured[kMaxDevices] = {};
  if (!asked[l.device].load(std::memory_order_acquire)) {
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(l.stream, &capture) != cudaSuccess || capture != cudaStreamCaptureStatusNone) {
      (void)cudaGetLastError();
      return 0;
    }
    std::lock_guard<std::mutex> lock(asking);
    if (!asked[l.device].load(std::memory_order_relaxed)) {
      const bool smem_ok =
          static_cast<int>(smem) <= l.smem_limit && ensure_smem(kernel, l.device, smem, configured) == cudaSuccess;
      if (!smem_ok) (void)cudaGetLastError();  // this instance cannot have its shared memory: no clusters
      for (int size = 2; size <= kMaxCluster; ++size) {
        // A size the query refuses is left out for good.
        const int clusters = smem_ok ? clusters_resident(kernel, size, kSmallTmaThreads, smem) : 0;
        resident[l.device][size] = clusters > 0 ? clusters : -1;
      }
      asked[l.device].store(true, std::memory_order_release);
    }
  }
  return cluster_size_for(ceil_div(l.k, thread_k), l.n / thread_n, l.blocks,
                          [&](int size) { return resident[l.device][size]; }, l.small_cluster_size, slack);
#endif
}

// One block per column (the striped schedule with as many blocks as columns gives each block one whole
// column), which writes C directly: no slots, no atomic, no last arriver, where that run is longer than the
// striped one by at most `slack` tiles; the blocks to launch, or 0. H100, session 32, kernel-probe, graph,
// TriRun only, two rounds, m = 1 / 8 / 16: 7B q/k/v 4096 x 12288 8.7 / 9.2 / 11.1 -> 8.2 / 8.2 / 9.8 us (96
// blocks, runs of 8 against 6), TriLM q/k/v 3072 x 9216 6.8 / 7.2 / 8.9 -> 6.4 / 6.4 / 7.6 (72 blocks, 6
// against 4); nothing else in the four sets changed, and a slack of 4 measured the same as 2.
inline int whole_column_blocks(int k_tiles, int n_tiles, int blocks, int slack) {
  const int striped_run = ceil_div(k_tiles * n_tiles, blocks);
  return slack > 0 && n_tiles <= blocks && k_tiles > striped_run && k_tiles <= striped_run + slack ? n_tiles : 0;
}

// Blocks for a Hopper launch with slots (SLOTS) of `tiles_per_column` k tiles per column and `columns`
// columns on up to `blocks` blocks. The kernel gives each block an even run of ceil(tiles / blocks) tiles;
// where that run does not divide the column but one a tile longer does, the longer run on fewer blocks: every
// block's run then lies in one column, so no block has two column ends (a slot store, and perhaps a last
// arriver's sum, ~1.5-3.8 us each at m = 64; H100, session 34, trace of 3072 x 3072, whose runs of 5 against
// 24-tile columns made some blocks take 9.8 us against a median of 5.3). Of the model sets' layers only
// 3072 x 3072 (runs 5 -> 6, 116 -> 96 blocks) and 2048 x 3072 (3 -> 4) change: the others' runs divide their
// columns already (BitNet o / q/k/v / down, 7B o), or need more than one tile (7B / TriLM down). Measured
// (H100, session 34, kernel-probe, graph, three rounds, with the rule off by TRIRUN_HOPPER_ALIGNED_RUNS=0):
// 3072 x 3072 at m = 33 / 48 / 64 9.7 / 9.6 / 9.6 -> 7.7 / 7.6 / 7.7 us; TriLM set at m = 64 50.8-51.0 ->
// 49.0-49.5.
inline int hopper_aligned_blocks(int tiles_per_column, int columns, int blocks) {
  const int tiles = tiles_per_column * columns;
  const int run = ceil_div(tiles, blocks);
  if (run >= tiles_per_column || tiles_per_column % run == 0 || tiles_per_column % (run + 1) != 0) return blocks;
  return ceil_div(tiles, run + 1);
}

// Blocks per cluster of a TMA small-batch launch (0: the striped schedule, a lock chain or slots).
template <int MB8, int N_WARPS, bool GROUPED>
int small_launch_cluster(const Launch& l, bool chained) {
  if (l.small_clusters <= (chained ? 1 : 0)) return 0;
  // A chain of two blocks hands its sums over once, which costs what cluster_sum's barriers do; the
  // cluster's co-scheduling then made it slower (H100, session 21: 70B o 8192 x 8192's chain of 2 as a
  // cluster of 2 10.8 -> 11.4 us at m = 1; BitNet q/k/v's chain as clusters of 3 6.6 -> 5.7), hence a
  // minimum for chains. The push exchange's one barrier beats the hand-over (H100, session 32, m = 1 / 16:
  // 70B o 10.0 / 12.7 -> 9.8 / 11.9-12.0 us, down 21760 x 8192 22.0 / 26.4 -> 21.0 / 25.2-25.3).
  const int chain_min =
      l.small_cluster_chain_min >= 0 ? l.small_cluster_chain_min : (small_push_fits<MB8, N_WARPS, GROUPED>() ? 2 : 3);
  const int size = small_cluster_size<MB8, N_WARPS, GROUPED>(l);
  return size > 1 && (!chained || size >= chain_min || l.small_cluster_size > 0) ? size : 0;
}

template <int MB8, int N_WARPS, bool GROUPED>
cudaError_t launch_small_tma(Launch& l) {
  const bool chained = small_chained(l, 128 * (8 / N_WARPS), N_WARPS * 64);
  const int size = small_launch_cluster<MB8, N_WARPS, GROUPED>(l, chained);
  if (size > 1) return launch_small_tma_reduction<MB8, N_WARPS, GROUPED, false, true>(l, size);
  const int whole_blocks =
      MB8 <= 2 ? whole_column_blocks(ceil_div(l.k, 128 * (8 / N_WARPS)), l.n / (N_WARPS * 64), l.blocks,
                                     l.small_whole_columns)
               : 0;  // (17..32 rows: not measured)
  if (whole_blocks > 0) {
    Launch whole = l;
    whole.blocks = whole_blocks;
    const cudaError_t err = launch_small_tma_reduction<MB8, N_WARPS, GROUPED, false, false>(whole);
    l.stages = whole.stages;
    l.threads = whole.threads;
    l.clustered_blocks = whole_blocks;
    return err;
  }
  return chained ? launch_small_tma_reduction<MB8, N_WARPS, GROUPED, true, false>(l)
                 : launch_small_tma_reduction<MB8, N_WARPS, GROUPED, false, false>(l);
}

// Whether 17..32 rows of a layer would run clustered on the small-batch kernel's 512 x 128 tile (the
// tile it takes there unless the layer is very wide), its column's k tiles split over the cluster's
// blocks with at most a tenth of the blocks' tile slots idle: the dispatcher's TRIRUN_NARROW_CLUSTERS rule.
// (A column takes as long as its longest run: BitNet q/k/v's 5 tiles over clusters of 3, runs 2 / 2 / 1,
// lost to the Hopper kernel, 9.4 -> 9.9 / 10.6 us at m = 17 / 32; 6 over 3 and 5 over 5 won.)
bool small32_clustered(const Launch& l, bool grouped) {
  const bool chained = small_chained(l, 512, 128);
  // Session 26's rule, without the cluster slack: where a longer run would cluster (7B down 11008 x 4096 at
  // 17..32 rows, clusters of 3) the Hopper kernel is faster (H100, session 33, graph: 16.3 / 16.4 us against
  // 16.8 / 16.7 on the small kernel at m = 17 / 32).
  Launch rule = l;
  rule.small_cluster_slack = 0;
  const int size =
      grouped ? small_launch_cluster<4, 2, true>(rule, chained) : small_launch_cluster<4, 2, false>(rule, chained);
  if (size <= 1) return false;
  const int k_tiles = ceil_div(l.k, 512);
  return 10 * (ceil_div(k_tiles, size) * size - k_tiles) <= k_tiles;
}

template <int MB8, int N_WARPS, bool GROUPED>
cudaError_t launch_small_any(Launch& l) {
  return l.small_tma ? launch_small_tma<MB8, N_WARPS, GROUPED>(l) : launch_small<MB8, N_WARPS, GROUPED>(l);
}

#ifdef TRIRUN_DISPATCH_RECORD
template <int MB8, bool GROUPED>
cudaError_t small_tile(int thread_n, Launch& l) {
  if (MB8 == 4 && thread_n == 512) return cudaErrorInvalidConfiguration;
  return record_launch(1, MB8, 65536 / thread_n, thread_n, GROUPED, l);
}
#else
template <int MB8, bool GROUPED>
cudaError_t small_tile(int thread_n, Launch& l) {
  if constexpr (MB8 == 4) {
    if (thread_n == 512) return cudaErrorInvalidConfiguration;  // 17..32 rows: no 128 x 512 tile
  } else {
    if (thread_n == 512) return launch_small_any<MB8, 8, GROUPED>(l);
  }
  if (thread_n == 256) return launch_small_any<MB8, 4, GROUPED>(l);
  return launch_small_any<MB8, 2, GROUPED>(l);  // 512 x 128
}
#endif

bool is_small_tile(int thread_k, int thread_n) {
  return (thread_k == 128 && thread_n == 512) || (thread_k == 256 && thread_n == 256) ||
         (thread_k == 512 && thread_n == 128);
}
bool is_general_tile(int thread_k, int thread_n) {
  return (thread_k == 128 && thread_n == 128) || (thread_k == 64 && thread_n == 256);
}

constexpr int kMaxBlocks = 256;  // bounds the general kernel's partial slots

size_t lock_bytes(int n, int max_par) {
  const size_t locks = static_cast<size_t>(n / 128 > 0 ? n / 128 : 1) * static_cast<size_t>(max_par) * sizeof(int);
  return (locks + 15) / 16 * 16;
}
size_t small_partial_bytes(int n) { return static_cast<size_t>(32) * (n > 0 ? n : 0) * sizeof(float); }
// Shared columns are named by their last block: one slot per possible block,
// as large as the largest output tile (the Hopper kernel's 256 rows x 128
// columns; the general kernel's is 64 x 256): 32 MB.
size_t slot_bytes(int n) {
  (void)n;
  return static_cast<size_t>(kMaxBlocks) * 256 * 128 * sizeof(float);
}

}  // namespace trirun

extern "C" size_t trirun_workspace_bytes(int n, int max_par) {
  (void)max_par;  // the layout is the same for every max_par
  // The fp32 partial slots of shared columns (general, small-batch and Hopper
  // kernels), column locks for every (batch slice, column of the narrowest
  // tile), then the small-batch kernel's fp32 partial sums (32 rows x n).
  return trirun::slot_bytes(n) + trirun::lock_bytes(n, trirun::kMaxPar) + trirun::small_partial_bytes(n);
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
      return "no valid configuration: thread_k x thread_n must be one of 128x512 (m <= 16), 256x256, 512x128 (m <= 32) "
             "or 128x128, 64x256 (any m) and divide k x n; sms must not exceed the device's SM count; the tile "
             "must fit the device's shared memory; variant 2 (the Hopper kernel) needs an sm_90 GPU, a build for "
             "sm_90a and no tile request";
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
  // k == 128 with g == 128 is a single group: the reference packs its scales
  // with the per-column permutation, so take the per-column path.
  const bool grouped = groupsize == 128 && k != 128;
  auto misaligned = [](const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) != 0; };
  if (misaligned(A) || misaligned(B) || misaligned(s) || misaligned(C) || misaligned(workspace))
    return TRIRUN_ERR_ALIGNMENT;

  const TrirunConfig req = config ? *config : TrirunConfig{};
  const int max_par = req.max_par > 0 ? (req.max_par < kMaxPar ? req.max_par : kMaxPar) : kMaxPar;
  if (workspace_bytes < trirun_workspace_bytes(n, max_par)) return TRIRUN_ERR_WORKSPACE;

  DeviceAttrs attrs;
  cudaError_t err = device_attrs(device, &attrs);
  if (err != cudaSuccess) {
    if (cuda_error) *cuda_error = err;
    return TRIRUN_ERR_CUDA;
  }
  // Blocks of one column wait on each other, so all of them must be resident
  // at once: never more blocks than SMs (one block fills an SM).
  int sms = req.sms > 0 ? req.sms : (attrs.sms < kMaxBlocks ? attrs.sms : kMaxBlocks);
  const bool pdl = attrs.pdl && stream != nullptr && stream != cudaStreamLegacy;
  // The Hopper (wgmma) kernel: automatic from 33 rows where it runs (sm_90, unless a tile is
  // requested), or asked for with config->variant = 2 at any m.
  if (req.variant == 2 && (!attrs.hopper || req.thread_k > 0)) return TRIRUN_ERR_CONFIG;
  // And from 17 rows on layers at most 4096 wide: there the small-batch kernel's 32-row tiles (many
  // blocks per column, 32-row partial sums) take longer than the Hopper kernel's 64-row slice with the
  // rows past m read as zeros (H100, trirun-bench, two rounds, m = 17 / 24 / 32: 7B o 4096 x 4096 13.0 /
  // 13.0 / 13.1 us against 16.4 / 19.0 / 21.0; 7B down 11008 x 4096 21.2 / 21.6 / 21.7 against 23.9 /
  // 25.8 / 29.3; TriLM down 9216 x 3072 19.5 / 19.3 / 19.4 against 21.6 / 27.7 / 26.9), while 5120-wide
  // 13B layers were mixed (down at m = 24 30.2 against 26.6 us).
  // Layers 3072..4096 deep take it too whatever their width (H100, session 24, kernel-probe, TriRun only,
  // two rounds, stream, m = 24 / 32: 7B q/k/v 4096 x 12288 16.1 / 16.7 -> 15.2 / 15.2 us, gate/up 4096 x
  // 22016 24.1 / 25.0 -> 23.5 / 23.6, TriLM q/k/v 3072 x 9216 13.1 / 13.7 -> 10.9 / 11.0, gate/up 3072 x
  // 18432 17.2 / 17.7 -> 16.5 / 16.5), but not shallower ones (BitNet gate/up 2560 x 13824 11.4 -> 12.3)
  // nor deeper wide ones (H100, session 25, the same A/B with the 70B's layers on 32-row Hopper slices too:
  // the 70B set at m = 17 / 24 / 32 161.1-163.3 / 163.8-165.7 / 167.3-168.6 -> 185.8-189.0 / 186.2-189.0 /
  // 185.3-187.3 us). TRIRUN_SHALLOW_HOPPER=0: off.
  const bool shallow_rows = attrs.shallow_hopper && k >= 3072 && k <= 4096;
  bool narrow_rows = attrs.narrow_hopper && m > 16 && m <= 32 && (n <= 4096 || shallow_rows);
  // But those rows stay on the small-batch kernel where its launch would be clustered with balanced runs
  // (small32_clustered): its blocks of a column then sum through distributed shared memory, while the Hopper
  // kernel's blocks of a column, 5..6 of them on these layers, run their ends of a slice one after another.
  // H100, session 26, kernel-probe, TriRun only, two rounds, stream, per layer at m = 17 / 32, small (clustered)
  // against Hopper: BitNet o 2560 x 2560 8.3 / 9.1 against 10.1 us (clusters of 5), down 6912 x 2560 11.5 / 12.3
  // against 13.7 (of 5), TriLM o 3072 x 3072 10.0 / 10.6 against 11.3 / 11.4 (of 3); sets: BitNet 44.5 / 44.6 ->
  // 41.0 / 43.3 us, TriLM 52.8 / 52.8 -> 51.5 / 52.1, with BitNet q/k/v on the small kernel too then (9.4 ->
  // 9.9 / 10.6 us: its unbalanced clusters now keep it on the Hopper kernel). TRIRUN_NARROW_CLUSTERS=0: off.
  // A small-batch launch as a dependent inside a captured graph (a decoding step) leaves one SM to the
  // kernel before it, usually a one-block norm: with one block fewer than SMs every block can start, and
  // request its weights, while the norm runs (7B step at batch 1, H100: 2.34-2.39 -> 2.22-2.24 ms; 132
  // blocks with PDL: 2.31-2.34).
  auto small_blocks = [&](int blocks) {
    if (!pdl || req.sms > 0 || blocks <= 1) return blocks;
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    return cudaStreamIsCapturing(stream, &capture) == cudaSuccess && capture == cudaStreamCaptureStatusActive
               ? blocks - 1
               : blocks;
  };
  // A launch of `blocks` blocks: what every kernel's launch helper reads.
  auto launch_of = [&](int blocks) {
    Launch x{};
    x.B = B;
    x.s = s;
    x.n = n;
    x.k = k;
    // Slots first, at the same place for every n: the Hopper kernel leaves
    // stale sums in them (it writes a slot before reading it), so they must
    // never overlap the locks, which start later for no call. The locks and
    // the small-batch partial sums, whose extents depend on n, are zero after
    // every call.
    x.slots = static_cast<float*>(workspace);
    x.locks = reinterpret_cast<int*>(static_cast<char*>(workspace) + slot_bytes(n));
    x.partial = reinterpret_cast<float*>(static_cast<char*>(workspace) + slot_bytes(n) + lock_bytes(n, kMaxPar));
    x.blocks = blocks;
    x.device = device;
    x.smem_limit = attrs.smem_optin;
    x.pdl = pdl;
    x.small_tma = attrs.small_tma;
    x.ramp = attrs.ramp;
    x.early = attrs.early;
    x.small_clusters = attrs.small_clusters;
    x.small_cluster_chain_min = attrs.small_cluster_chain_min;
    x.small_cluster_slack = attrs.small_cluster_slack;
    x.hopper_wide = attrs.hopper_wide;
    x.small_whole_columns = attrs.small_whole_columns;
    x.small_cluster_size = attrs.small_cluster_size;
    x.stream = stream;
    return x;
  };
  // Whether n still gives every one of `blocks` SMs most of a 256-wide column: where the small-batch kernel
  // takes its wider tile from 17 rows (9 on the cp.async version; see the tile choice below).
  auto small_wide_n = [&](int blocks) { return n % 256 == 0 && 10 * (n / 256) >= 7 * blocks; };
  if (narrow_rows && attrs.narrow_clusters && attrs.small_tma && req.variant != 2 && req.thread_k <= 0 && req.sms <= 0) {
    const int blocks = small_blocks(sms);
    if (!small_wide_n(blocks) && small32_clustered(launch_of(blocks), grouped)) narrow_rows = false;
  }
  const bool hopper = attrs.hopper && (req.variant == 2 || (req.thread_k <= 0 && (m > 32 || narrow_rows)));
  // Only the small-batch kernel (m <= 32, automatic or small tile) launches as a dependent.
  const bool small_call =
      !hopper && m <= 32 && (req.thread_k <= 0 || is_small_tile(req.thread_k, req.thread_n));
  if (small_call) sms = small_blocks(sms);
  if (sms > attrs.sms || sms > kMaxBlocks) return TRIRUN_ERR_CONFIG;
  if ((req.thread_k > 0) != (req.thread_n > 0)) return TRIRUN_ERR_CONFIG;

  Launch l = launch_of(sms);

  const half* a_ptr = static_cast<const half*>(A);
  half* c_ptr = static_cast<half*>(C);
  TrirunConfig used{};
  // Rows per batch slice: 64 (general kernel; Hopper kernel up to 64 rows, or 192 on narrow layers), 128 or
  // 256 (Hopper).
  // 256-row slices (m64n256 wgmmas) only where they still give at least 64
  // output tiles: on narrow layers the 128-row ones keep more blocks on
  // columns of their own (H100, 4096 x 4096 at m = 256: 29.8 us vs 36.4 us).
  // Below 256 rows one 256-row slice (rows past m read as zeros) beats a 128-row one plus a second
  // 128-row one for the rest in one launch (H100, trirun-bench: 7B q/k/v 4096 x 12288 57.4 us at m = 192
  // on 128-row slices, 46.5 at m = 256 on one 256-row slice; gate/up 92.7 against 76.5): from 129 rows,
  // or from 193 with the tail split below, which does 129..192 as a 128-row launch and a 64-row one.
  // TRIRUN_SHORT_WIDE=0: from 256 rows only.
  const bool short_wide =
      attrs.short_wide && m > (attrs.tail_split ? 192 : 128) && m < 256 && n / kHopperTileN >= 64;
  const bool wide_slices = short_wide || (m >= 256 && (m / 256) * (n / kHopperTileN) >= attrs.wide_min_tiles);
  // Layers at most 4096 wide take 64-row slices up to 192 rows: a narrow layer has few 128-column
  // tiles, and 64-row slices give twice as many blocks work of their own (H100, trirun-bench, two
  // rounds, m = 96 / 128 / 192: 7B o 4096 x 4096 13.9 / 13.8 / 18.3 us against 18.8 / 19.1 / 19.9,
  // down 11008 x 4096 29.3 / 28.7 / 38.6 against 32.1 / 31.9 / 42.1, TriLM o 3072 x 3072 14.1 / 13.0 /
  // 14.0 against 20.9 / 21.4 / 20.0; at m = 256 the down projections lost: 49.5 against 41.8 us).
  // TRIRUN_NARROW_SLICES=0 turns it off.
  const bool narrow_slices = attrs.narrow_slices && n <= 4096 && m <= 192;
  // From 129 to 224 rows the Hopper kernel, which is bound by its tensor cores there (H200, ncu, run 98:
  // tensor pipe 74% active at m = 128, 85% at 256), pays for every zero row of a 256-row slice, and a
  // 128-row slice plus a tail streams the weights twice: one slice of the rows rounded up to 16 (wgmma
  // N = 144..224) does neither. H200, TRIRUN_MID_SLICES 0 / 1, two rounds, graph, first in steps of 32
  // (run 99): 70B at m = 144 / 160 / 192 / 224 500-510 / 546-550 / 630-641 / 629-632 -> 420-425 /
  // 428-434 / 537-542 / 587-591 us; 7B at 160 169 -> 139, TriLM 113 -> 93-94. Only on layers with at
  // least 64 tiles of 128 columns: at 208 and 224 rows the 3072- and 4096-wide ones, with one slice
  // instead of two, lost (7B 185-196 -> 192-196 us, TriLM 128-132 -> 146-153). Steps of 16 against steps
  // of 32 (run 101): 70B at m = 136 / 168 / 200 399-402 / 468-471 / 557-561 -> 359-379 / 445-447 /
  // 524-526 us, 7B at 168 / 200 147 / 168-169 -> 140-142 / 160-161. TRIRUN_MID_SLICES=0: as before.
  // What one such slice takes: 129..224 rows of a Hopper call on a layer with >= 64 column tiles.
  auto mid_height = [&](int r) {
    return hopper && !narrow_slices && r > 128 && r <= 224 && n / kHopperTileN >= 64;
  };
  const bool mid_slices = attrs.mid_slices && mid_height(m);
  // 257..448 rows as two equal slices of half the rows rounded up to 16 (wgmma N = 144..224) in one
  // launch, on layers at least 4096 wide (64 column-slices), instead of a 256-row launch and a second one
  // for the rest (or three or four 128-row slices). H200, run 107, TRIRUN_MID_PAIRS 0 / 1, two rounds,
  // TriRun only, stream: 70B set at m = 272 / 320 / 384 / 400 / 448 659-684 / 856-859 / 964-968 / 1001-1005
  // / 1120-1122 -> 649-651 / 768-779 / 910-917 / 990-992 / 1078-1079 us; 7B 223 / 240-248 / 255-256 / 297-303
  // / 322-323 -> 178-180 / 199-200 / 245-246 / 267-270 / 293-294; TriLM 151-152 / 156 / 166-169 / 205-206 /
  // 223-226 -> 134-135 / 137 / 148-156 / 190-191 / 210-212. TRIRUN_MID_PAIRS=0: off.
  // The 3072-wide layers (48 column-slices) take them too, except where whole 128-row slices hold the rows
  // without padding (m = 384: 3072 x 3072 16.2 us on three 128-row slices, 19.7 on two 192-row ones). H200,
  // TRIRUN_MID_PAIRS_MIN_TILES 64 / 48, two rounds each, TriRun only, graph: TriLM set at m = 272 / 320 / 400 /
  // 448 132-133 / 135-136 / 188-189 / 203-207 -> 121-122 / 132 / 171-175 / 189-190 us (run 109; 3072 x 3072 at
  // 400: 25.7 -> 21.1 us, its 16-row tail on the small-batch kernel gone), at 288 / 352 137-139 / 145-150 ->
  // 122-123 / 140-146 (run 110); 7B and 70B unchanged.
  // Experiment, off by default (TRIRUN_NARROW_128=1; not yet run): the 3072 x 3072 layer's blocks are bound by
  // fixed costs, so one more 128-row slice in the same launch costs less than taller slices or a tail launch
  // (H200, runs 111-112, graph: 384 rows on 3 x 128 16.1 us, 480 / 512 on 4 x 128 17.9 / 18.0, but 320 / 352
  // rows on two mid slices 17.1 / 18.1 and 400 / 448 rows 20.9 / 22.2; NOTES.md, session 16). So on layers
  // with k and n <= 3072, 257..512 rows go as 128-row slices in one launch, the last one partial; and on
  // those up to 4096, m = 512 too (4096 x 4096: 480 rows on 4 x 128 27.2 us, 512 on 2 x 256 31.1).
  const bool narrow_128 = attrs.narrow_128 && hopper && m <= 512 &&
                          ((k <= 3072 && n <= 3072 && m > 256) || (k <= 4096 && n <= 4096 && m > 448));
  const int column_slices = 2 * (n / kHopperTileN);
  const bool mid_pairs = attrs.mid_pairs && hopper && !narrow_128 && m > 256 && m <= 448 &&
                         (column_slices >= 64 || (column_slices >= attrs.mid_pairs_min_tiles && m % 128 != 0));
  // 33..64 rows of a narrow layer whose 64-row slice would give each block at most 16 tiles go as two
  // 32-row slices: twice the (slice, column) units, so fewer blocks share a column, for the weights
  // decoded twice (from L2 the second time). H100, session 24, kernel-probe, TriRun only, two rounds,
  // stream, m = 64: TriLM o 3072 x 3072 (4.4 tiles per block) 13.6 -> 10.0 us, down 9216 x 3072 (13.1)
  // 18.8 / 18.9 -> 18.0 / 17.9; 7B o 4096 x 4096 (7.8) 12.2 / 12.3 -> 11.1 / 11.2; BitNet 2560 x 2560 /
  // 2560 x 3840 / 6912 x 2560 12.0 / 11.0 / 16.1 -> 9.5 / 8.6 / 15.0; but 7B down 11008 x 4096 (20.8
  // tiles per block) 20.1-21.0 -> 23.6-23.7. From 65 rows (three or four 32-row slices) it lost on most
  // of these layers (7B o at m = 96 / 128: 12.3 / 12.4 -> 15.0 / 16.1 us). TRIRUN_NARROW_32=0: off.
  // (Only where both slices fit one launch: with maxParallel 1 they would read the weights twice.)
  // Since session 32 those rows of layers at most 4096 wide run instead as one 64-row slice whose split
  // columns sum through parallel slots (the kernel's SLOTS): the lock chain's hand-overs are serial, and a
  // 64-row slice splits each column over 4-5 blocks. H100, session 32, kernel-probe, graph, TriRun only, two
  // rounds, m = 64 (33 and 48 alike), 32-row slices with the chain against 64-row ones with slots: 7B o
  // 4096 x 4096 10.0 -> 9.1 us, down 11008 x 4096 19.7 -> 17.3, TriLM down 9216 x 3072 16.1 -> 14.0, BitNet o
  // 2560 x 2560 8.5 -> 7.4, down 6912 x 2560 13.4 -> 10.1, but TriLM o 3072 x 3072 9.0 -> 9.9 and BitNet q/k/v
  // 2560 x 3840 7.5 -> 7.7. (Slots on the wide layers lost ~2 us: every block of a split column holds its
  // last stage until it knows whether it writes C. At m = 96..128, two 64-row slices, they lost too: 7B down
  // 25.7 -> 28.2.) TRIRUN_HOPPER_SLOTS=0: off. Measured and dropped (H100, session 33, graph, two rounds):
  // slots on the 70B's o and down too (8192 x 8192 18.7-19.2 -> 19.0 us at m = 64, 21760 x 8192 44.1-45.2 ->
  // 45.6-46.6 at 33), and 32-row slices with slots (TriLM o 10.0 -> 8.9 us at m = 64, but 7B o 9.1 -> 10.2,
  // TriLM down 14.1 -> 16.0, BitNet o 7.4 -> 8.1 and down 10.2 -> 12.2: no rule by tiles per block).
  const bool hopper_slots = attrs.hopper_slots && hopper && m > 32 && m <= 64 && narrow_slices;
  l.hopper_slots = hopper_slots;
  const bool narrow_32 = attrs.narrow_32 && attrs.slice32 && hopper && narrow_slices && m > 32 && m <= 64 &&
                         max_par >= 2 && (k / kHopperTileK) * (n / kHopperTileN) <= 16 * sms && !hopper_slots;
  // The rule of narrow_32 above for 256-row slices too: where a call's 256-row slices give each block at
  // most 16 tiles, 128-row ones (twice the (slice, column) units, so fewer blocks share a column) are
  // faster. H100, session 25, kernel-probe, TriRun only, two rounds, stream: 7B o 4096 x 4096 at m = 512
  // (15.5 tiles per block) 29.4 / 29.6 -> 25.2 / 25.3 us; TriLM o 3072 x 3072 at 768 (13.1) 28.6 / 28.9 ->
  // 25.7 / 25.9; TriLM q/k/v 3072 x 9216 at 256 (13.1) 28.3 / 27.9 -> 25.3 / 25.5; BitNet 2560 x 3840 at 768
  // 28.8 / 28.9 -> 27.7 / 27.9, 2560 x 2560 at 1024 27.7 / 27.4 -> 23.7. With more tiles per block the
  // 256-row slices won (session 24: TriLM o at m = 1024, 17.5 tiles: 32.0 -> 34.8 us; 7B down at 512, 41.7:
  // 68.2 -> 70.0). TRIRUN_FEW_TILE_SLICES=0: off.
  // Halving 128-row slices as well (TRIRUN_FEW_TILE_SLICES=2, experiment) was mixed, so it is off: m = 256
  // gained on 3072 x 3072 (16.1 -> 13.7 us) and 2560 x 2560 (15.2 -> 11.9) but lost on 4096 x 4096 (17.5 ->
  // 17.9) and 2560 x 3840 (13.1 -> 14.8), and m = 384 lost on every layer it moved (2560 x 2560 13.0 -> 14.6,
  // 2560 x 3840 17.6 -> 19.8), as did TriLM q/k/v at 128 (17.0 -> 18.0).
  // Only for calls of whole slices (m a multiple of the height: no partial slice for the tail split to
  // move into a launch of its own) whose half-height slices still fit one launch, so that the test
  // counts the slices the launch really has and halving never adds a launch.
  // The Hopper kernel reads each slice's activations once per 128 output columns, from L2 if the
  // slices of one launch fit there: at most ~24 MB of them per launch (H100, 4096 x 11008 at m = 4096:
  // 928 us with 16 slices of 5.6 MB, which re-read A from memory). Slices of `rows` rows per launch:
  auto l2_fit = [&](int rows) {
    const long long fit = (static_cast<long long>(attrs.hopper_l2_mb) << 20) / (static_cast<long long>(rows) * k * 2);
    return fit < 1 ? 1LL : fit;
  };
  auto plain_slice_rows = [&]() {
    const int rows = wide_slices && !narrow_128 ? 256 : (m > 64 ? 128 : 64);
    const int halved_from = attrs.few_tile_slices >= 2 ? 128 : 256;
    if (attrs.few_tile_slices <= 0 || !hopper || rows < halved_from || m % rows != 0) return rows;
    const long long slices = m / rows;
    if (2 * slices > max_par || 2 * slices > l2_fit(rows / 2)) return rows;
    const long long tiles = slices * (k / kHopperTileK) * (n / kHopperTileN);
    return tiles <= 16LL * sms ? rows / 2 : rows;
  };
  const int slice_rows =
      hopper ? (narrow_32 ? 32 : narrow_slices ? 64
                              : (mid_slices ? ceil_div(m, 16) * 16
                                            : (mid_pairs ? ceil_div(m, 32) * 16 : plain_slice_rows())))
             : 64;
  int par = max_par;
  if (hopper && l2_fit(slice_rows) < par) par = static_cast<int>(l2_fit(slice_rows));
  // On the Hopper kernel a partial last slice costs about what a full one does where the whole
  // slices already give every SM work (H100, 70B q/k/v 8192 x 24576: 82 us at m = 128, 184 at
  // m = 160 on two 128-row slices): there the whole slices go in one launch and the rest in
  // another, with the smallest slice that holds it (64 rows for m = 160). Narrow layers, whose
  // slices run side by side, keep one launch. TRIRUN_TAIL_SPLIT=0: always one launch.
  // Only where the rest takes a smaller slice (at most half of one, or a mid slice): 65..127 rows
  // after 128-row slices would take a 128-row slice of their own and read the weights once more
  // (the 3072- and 4096-wide layers at m = 449..511, 577..639...). H200, run 111, two rounds,
  // TriRun only, graph: 7B set at m = 449 / 480 / 496 / 1000 310-318 / 336-337 / 349 / 654-659 ->
  // 279-280 / 312-313 / 312-315 / 596-601 us, TriLM 221 / 233-234 / 240-241 / 438-440 -> 189-190 /
  // 202-205 / 197 / 377 (7B o 4096 x 4096 at 480: 38.3 -> 24.3 us), 70B at 496 1316-1335 -> 1251-1261.
  auto split_tail = [&](int left, int rows) {
    const int tail = left % slice_rows;
    const bool smaller_tail = tail <= slice_rows / 2 || (attrs.mid_tails && mid_height(tail));
    return hopper && attrs.tail_split && !mid_pairs && !narrow_128 && slice_rows >= 128 && rows == left &&
                   left > slice_rows && tail != 0 && smaller_tail && (left / slice_rows) * (n / kHopperTileN) >= 64
               ? left - tail
               : rows;
  };
  // The slices of a call that needs several launches spread evenly over them (TriLM down 9216 x 3072 at
  // m = 4096: 4 + 4 + 4 + 4 slices instead of 5 + 5 + 5 + 1, whose last launch had 24 output tiles for 132
  // SMs and split every column's k over ~5 blocks). H100, session 23, TriRun only, two rounds: that layer
  // 390.9 / 376.3 -> 353.3 / 351.0 us (stream), 399.6 / 392.0 -> 379.4 / 375.9 (graph); the TriLM set at
  // m = 4096 1568 / 1543 -> 1515 / 1517 us; elsewhere within the run-to-run spread. Only where that takes no
  // more launches than the plain split: with a partial last slice the tail split can otherwise add one (70B
  // 8192 x 10240 at m = 1600: 1024 + 512 + 64 rows against 1536 + 64), reading the weights once more
  // (tools/dispatch-check.cu checks it). TRIRUN_BALANCE_LAUNCHES=0: off.
  auto chunk = [&](bool balance, int left, int launches_left) {
    const int launch_par =
        balance && launches_left > 1 ? ceil_div(ceil_div(left, slice_rows), launches_left) : par;
    return split_tail(left, left < slice_rows * launch_par ? left : slice_rows * launch_par);
  };
  const int planned_launches = ceil_div(ceil_div(m, slice_rows), par);
  auto count_launches = [&](bool balance) {
    int count = 0;
    for (int row = 0, left_l = planned_launches; row < m; --left_l, ++count) row += chunk(balance, m - row, left_l);
    return count;
  };
  const bool balance = hopper && attrs.balance_launches && planned_launches > 1 &&
                       count_launches(true) <= count_launches(false);
  int launches_left = planned_launches;
  for (int row = 0, rows = 0; row < m; row += rows, --launches_left) {
    const int left = m - row;
    rows = chunk(balance, left, launches_left);
    int thread_k = req.thread_k, thread_n = req.thread_n;
    // The last rows of a Hopper call split off above (or the last chunk of a long call) go to the
    // small-batch kernel when there are at most 16 of them, or at most 32 on layers at least 8192
    // deep, instead of a Hopper launch whose slice is mostly zeros (H200, run 91, TRIRUN_SMALL_TAIL
    // 0 / 1 alternating, two rounds, graph: 70B set at m = 129 / 144 / 160 516-525 / 568-570 /
    // 573-583 us -> 423-430 / 511-513 / 557-560; 7B at m = 129 / 144 165 / 164-168 -> 146-147 / 147,
    // TriLM 116 / 111-116 -> 102 / 105-109; but 32-row tails of the 4096- and 3072-deep layers were
    // 1-4% slower there: 7B at m = 160 166-176 -> 167-180 us, TriLM 113-114 -> 117-118).
    // TRIRUN_SMALL_TAIL=0: the Hopper kernel for every launch of a Hopper call.
    const bool small_tail =
        attrs.small_tail && req.variant != 2 && m > 32 && (rows <= 16 || (rows <= 32 && k >= 8192));
    const bool hopper_launch = hopper && !small_tail;
    // The small-batch kernel runs up to 32 rows (8-row blocks: 1, 2 or 4); the
    // 128 x 512 tile only up to 16 (its slots would not fit the workspace).
    const bool small = !hopper_launch && rows <= 32 && (thread_k <= 0 || (is_small_tile(thread_k, thread_n) &&
                                                                          (rows <= 16 || thread_n != 512)));
    if (hopper_launch) {
      thread_k = kHopperTileK;
      thread_n = kHopperTileN;
    } else if (thread_k <= 0) {
      if (small) {
        // The narrowest tile (512 x 128) gives each block the longest run
        // down one column, so few blocks share a column and the reduction
        // chain stays short; measured best on every Llama/TriLM shape for
        // m <= 8 (NOTES.md), and with the TMA kernel (sm_90) up to 16 rows
        // (8192 x 24576 at m = 16: 37.5 vs 41.0 us for 256 x 256). Above
        // that it reads A (from L2) as many bytes as weights or more, so
        // the cp.async kernel from 9 rows and both from 17 take a wider
        // tile where n still gives every SM most of a column (the TMA
        // kernel at m = 24..32: a tie).
        thread_n = 128;
        const int wide_from = l.small_tma ? 16 : 8;
        if (rows > wide_from && small_wide_n(sms)) thread_n = 256;
        thread_k = 65536 / thread_n;
      } else if (rows <= 16) {
        thread_k = 128;
        thread_n = 128;
      } else {
        thread_k = 64;
        thread_n = 256;
      }
    }
    if (!hopper_launch && (small ? !is_small_tile(thread_k, thread_n) : !is_general_tile(thread_k, thread_n)))
      return TRIRUN_ERR_CONFIG;
    // The small-batch kernel handles a partial last k tile; the general one does not.
    if ((!small && k % thread_k != 0) || n % thread_n != 0) return TRIRUN_ERR_CONFIG;
    l.A = a_ptr + static_cast<size_t>(row) * k;
    l.C = c_ptr + static_cast<size_t>(row) * n;
    l.m = rows;
    l.clustered_blocks = 0;
    int m_blocks;
    if (hopper_launch) {
      // Activation rows per wgmma (its N): the slice's rows, or fewer for a short last chunk. A launch
      // of at most 32 rows here (17..32 rows of a narrow layer) takes 32-row slices rather than 64-row
      // ones half zeros (H200, run 90, two rounds: 7B set at m = 17 / 32 78.4 / 77.5 -> 70.3 / 72.4 us,
      // TriLM 63.8 / 65.5 -> 58.5 / 60.4; with the tails then still on this kernel, 70B at m = 160
      // 615 -> 578 us). TRIRUN_SLICE32=0: 64-row slices.
      // The split-off last launch of a call with 129..224 rows (m = 385..480 on 256-row slices) takes
      // one slice of those rows rounded up to 16, like the mid slices above, instead of a 256-row one
      // (H200, run 104, TriRun only, two rounds, stream: 70B m = 385 / 400 / 448 / 480 1250-1259 /
      // 1271-1273 / 1239 / 1315-1335 -> 955-960 / 1036-1037 / 1143-1146 / 1238 us; 7B 378 / 382 / 361-364
      // / 377-383 -> 287-288 / 312-316 / 344 / 377; TriLM 268 / 273-274 / 262-263 / 274 -> 208-209 /
      // 219-222 / 246 / 272). TRIRUN_MID_TAILS=0: off.
      const bool mid_launch = mid_slices || (attrs.mid_tails && row > 0 && mid_height(rows));
      const int n_act = mid_pairs ? slice_rows
                        : mid_launch ? ceil_div(rows, 16) * 16
                        : slice_rows == 256 && rows > 128
                            ? 256
                            : (rows > 64 && slice_rows > 64 ? 128
                                                              : (attrs.slice32 && (rows <= 32 || slice_rows == 32) ? 32 : 64));
      m_blocks = n_act / 16;  // 16-row blocks
      const int striped_blocks = l.blocks;
      const int tile_n = hopper_launch_tile_n(l, n_act);
      if (l.hopper_slots && attrs.aligned_runs && n_act == 64)
        l.blocks = hopper_aligned_blocks(k / kHopperTileK, ceil_div(rows, n_act) * ceil_div(n, tile_n), l.blocks);
      thread_n = tile_n;  // (reported in the config; n was checked against the 128-column tile above)
      err = launch_hopper_rows<32, 128, 144, 160, 176, 192, 208, 224, 256, 64>(n_act, grouped, l);
      l.blocks = striped_blocks;
    } else if (small) {
      m_blocks = rows <= 8 ? 1 : (rows <= 16 ? 2 : 4);  // 8-row blocks
      switch (m_blocks) {
        case 1:
          err = grouped ? small_tile<1, true>(thread_n, l) : small_tile<1, false>(thread_n, l);
          break;
        case 2:
          err = grouped ? small_tile<2, true>(thread_n, l) : small_tile<2, false>(thread_n, l);
          break;
        default:
          err = grouped ? small_tile<4, true>(thread_n, l) : small_tile<4, false>(thread_n, l);
      }
    } else {
      m_blocks = rows > 64 ? 4 : ceil_div(rows, 16);
      err = grouped ? general_m<true>(m_blocks, thread_k, thread_n, l)
                    : general_m<false>(m_blocks, thread_k, thread_n, l);
    }
    if (err == cudaErrorInvalidConfiguration) return TRIRUN_ERR_CONFIG;
    if (err != cudaSuccess) {
      if (cuda_error) *cuda_error = err;
      return TRIRUN_ERR_CUDA;
    }
    if (row == 0) {
      used.thread_k = thread_k;
      used.thread_n = thread_n;
      used.m_blocks = m_blocks;  // 8-row blocks for the small-batch kernel, 16-row otherwise
      used.variant = hopper_launch ? 2 : (small ? 1 : 0);
      used.stages = l.stages;
      used.sms = l.clustered_blocks > 0 ? l.clustered_blocks : sms;
      used.max_par = par;
      used.threads = l.threads;
    }
  }
  if (config) *config = used;
  return TRIRUN_OK;
}

#ifdef TRIRUN_TRACE
// Experiments only: reset the launch counter, read the timestamps back.
extern "C" cudaError_t trirun_trace_reset() {
  const unsigned int zero = 0;
  cudaError_t err = cudaMemcpyToSymbol(trirun::g_trace_arrivals, &zero, sizeof(zero));
  static unsigned long long blank[trirun::kTraceLaunches][trirun::kTraceBlocks][2 * trirun::kTracePoints];
  static unsigned long long blank_sums[trirun::kTraceLaunches][trirun::kTraceBlocks][trirun::kTraceSums];
  if (err == cudaSuccess) err = cudaMemcpyToSymbol(trirun::g_trace_sums, blank_sums, sizeof(blank_sums));
  return err == cudaSuccess ? cudaMemcpyToSymbol(trirun::g_trace, blank, sizeof(blank)) : err;
}
extern "C" cudaError_t trirun_trace_read(unsigned long long* out, size_t count) {
  return cudaMemcpyFromSymbol(out, trirun::g_trace, count * sizeof(unsigned long long));
}
// [launch][block][sum] of TRIRUN_TRACE_SUM (Hopper kernel: slice ends), 4 x 256 x 4 values.
extern "C" cudaError_t trirun_trace_read_sums(unsigned long long* out, size_t count) {
  return cudaMemcpyFromSymbol(out, trirun::g_trace_sums, count * sizeof(unsigned long long));
}
#endif

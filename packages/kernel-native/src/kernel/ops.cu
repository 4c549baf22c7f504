// Model operations (see ops.h): simple, correct kernels first. Row
// operations use one block per row with warp-shuffle reductions; elementwise
// operations use grid-stride loops; every sum is fp32 and every fp16 value is
// widened before use and rounded once at the end.
#include <atomic>
#include <cmath>
#include <cstdlib>

#include "ops.h"

namespace {

constexpr int kRowThreads = 256;   // threads per row block (8 warps)
constexpr int kMaxDimChunks = TRIRUN_OPS_MAX_HEAD_DIM / 32;  // per-lane accumulators

__device__ __forceinline__ float WarpSum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// max(a, b) that keeps a NaN (fmaxf drops one): a row with a NaN has a NaN maximum, which the
// quantizing kernels need (below); elsewhere the inputs hold no NaN.
__device__ __forceinline__ float MaxKeepNaN(float a, float b) { return isnan(b) ? b : isnan(a) ? a : fmaxf(a, b); }

__device__ __forceinline__ float WarpMax(float v) {
  for (int o = 16; o > 0; o >>= 1) v = MaxKeepNaN(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum (or max) over the block; every thread gets the result. `scratch` holds
// one float per warp; the trailing barrier lets the caller reuse it.
template <bool kMax>
__device__ float BlockReduce(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = kMax ? WarpMax(v) : WarpSum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float r = lane < warps ? scratch[lane] : (kMax ? -INFINITY : 0.0f);
  r = kMax ? WarpMax(r) : WarpSum(r);
  __syncthreads();
  return r;
}

__device__ __forceinline__ float LoadAsFloat(const void* p, int is_f32, int64_t i) {
  return is_f32 ? static_cast<const float*>(p)[i] : __half2float(static_cast<const __half*>(p)[i]);
}

// Grid size for a grid-stride loop: enough blocks to fill the GPU, no more.
unsigned GridFor(int64_t n, int threads) {
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  return static_cast<unsigned>(blocks > 65535 ? 65535 : blocks);
}

// Programmatic dependent launch (sm_90; see LaunchOp): every op kernel starts
// with this. It lets the next kernel in the stream launch now if that one was
// launched as a programmatic dependent (the TriRun matmul, other ops): a
// matmul then requests its weights, which do not depend on this kernel, while
// this one runs. Then it waits until the kernel before this one has completed
// and its writes are visible (at once for a plain launch), before this kernel
// reads or writes anything: the kernel before may still read what this one
// overwrites.
__device__ __forceinline__ void LaunchDependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void WaitForPrerequisites() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void DependentPrologue() {
  LaunchDependents();
  WaitForPrerequisites();
}

__global__ void EmbeddingKernel(const int32_t* ids, const __half* table, __half* out, int vocab, int dim) {
  DependentPrologue();
  const int row = blockIdx.x;
  const int id = ids[row];
  __half* dst = out + static_cast<int64_t>(row) * dim;
  if (id < 0 || id >= vocab) {
    // A bad id must be visible downstream, not silently read another row.
    for (int j = threadIdx.x; j < dim; j += blockDim.x) dst[j] = __float2half(NAN);
    return;
  }
  const __half* src = table + static_cast<int64_t>(id) * dim;
  for (int j = threadIdx.x; j < dim; j += blockDim.x) dst[j] = src[j];
}

__global__ void RmsNormKernel(const __half* x, const void* weight, int weight_f32, __half* out, int dim, float eps) {
  DependentPrologue();
  __shared__ float scratch[32];
  const int64_t base = static_cast<int64_t>(blockIdx.x) * dim;
  float ss = 0.0f;
  for (int j = threadIdx.x; j < dim; j += blockDim.x) {
    const float v = __half2float(x[base + j]);
    ss += v * v;
  }
  // Every thread has read its elements before anyone writes (out may alias x).
  const float inv = rsqrtf(BlockReduce<false>(ss, scratch) / dim + eps);
  for (int j = threadIdx.x; j < dim; j += blockDim.x) {
    out[base + j] = __float2half(__half2float(x[base + j]) * inv * LoadAsFloat(weight, weight_f32, j));
  }
}

// Vectorised row kernels for the common case (dim a multiple of 8, 16-byte
// aligned rows, dim <= 8 * kRowThreads * kRowVecs): each thread issues all of
// its 16-byte loads before it uses any of them. The scalar loops above wait
// for one global load per iteration; at batch 1 a row is a few KB and those
// serial load latencies (~0.6 us each from DRAM) were the whole cost of the
// kernel (~15 us for dim 4096, measured with ncu).
constexpr int kRowVecs = 4;

__device__ __forceinline__ float2 HalvesToFloats(uint32_t w) {
  return __half22float2(*reinterpret_cast<const __half2*>(&w));
}

__global__ void EmbeddingVecKernel(const int32_t* __restrict__ ids, const uint4* __restrict__ table,
                                   uint4* __restrict__ out, int vocab, int vecs) {
  DependentPrologue();
  const int row = blockIdx.x;
  const int id = ids[row];
  uint4* dst = out + static_cast<int64_t>(row) * vecs;
  if (id < 0 || id >= vocab) {
    const __half2 nan2 = __float2half2_rn(NAN);
    const uint32_t w = *reinterpret_cast<const uint32_t*>(&nan2);
    for (int v = threadIdx.x; v < vecs; v += blockDim.x) dst[v] = make_uint4(w, w, w, w);
    return;
  }
  const uint4* src = table + static_cast<int64_t>(id) * vecs;
  uint4 r[kRowVecs];
#pragma unroll
  for (int i = 0; i < kRowVecs; ++i) {
    const int v = threadIdx.x + i * blockDim.x;
    if (v < vecs) r[i] = src[v];
  }
#pragma unroll
  for (int i = 0; i < kRowVecs; ++i) {
    const int v = threadIdx.x + i * blockDim.x;
    if (v < vecs) dst[v] = r[i];
  }
}

// A 16-byte vector of 8 fp16 values, pair by pair: f(p, pair p as floats)
// gives the new pair p (rounded by f).
template <typename F>
__device__ __forceinline__ uint4 MapHalfPairs(uint4 v, F&& f) {
  const uint32_t in[4] = {v.x, v.y, v.z, v.w};
  uint32_t o[4];
#pragma unroll
  for (int p = 0; p < 4; ++p) {
    const __half2 h = f(p, HalvesToFloats(in[p]));
    o[p] = *reinterpret_cast<const uint32_t*>(&h);
  }
  return make_uint4(o[0], o[1], o[2], o[3]);
}

// The largest of mx and the magnitudes of a vector's 8 fp16 values.
__device__ __forceinline__ float AbsMax(float mx, uint4 v) {
  const uint32_t in[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int p = 0; p < 4; ++p) {
    const float2 f = HalvesToFloats(in[p]);
    mx = MaxKeepNaN(mx, MaxKeepNaN(fabsf(f.x), fabsf(f.y)));
  }
  return mx;
}

// A row's quantization scale qmax / max(absmax, 1e-5), and a value's level clamp(rint(x * scale),
// -qmax - 1, qmax), both keeping NaN: a row with a NaN or an infinity comes out all NaN (its scale NaN,
// or 0 with every x * 0 or inf * 0 then 0 / 0 or NaN), as torch's ActQuant and the CPU runtime give,
// instead of fmaxf/fminf turning NaN into -qmax - 1 (a finite value where the input had none).
__device__ __forceinline__ float RowQuantScale(float absmax, float qmax) {
  return qmax / (isnan(absmax) ? absmax : fmaxf(absmax, 1e-5f));
}
__device__ __forceinline__ float QuantLevel(float x_times_scale, float qmax) {
  const float r = rintf(x_times_scale);
  return isnan(r) ? r : fminf(fmaxf(r, -qmax - 1.0f), qmax);
}

// The dequantization's q / scale for one row, without a division per value.
// CUDA's IEEE division is a reciprocal, three fmas and a range check (FCHK)
// that sends some operands, zero dividends among them, to a subroutine, all
// inside a convergence region per value: the quantizing row kernels ran 1 to
// 4.5 us longer than the norms on the same rows, more with more zeros in them
// (8-bit rows hold many: half a row after relu2; ncu and tools/op-timing.cu,
// H100, session 22). Here 1 / scale is taken once, and each quotient is
// y = q * inv corrected by one fma (Markstein), which equals the IEEE quotient
// for every q in [-128, 127] and every scale in [2^-16, 1.3e7]: all of them,
// checked exhaustively on the CPU by tools/dequantize-division-check.c. A
// row's scale is qmax / max(absmax, 1e-5) with qmax in 1..127 and absmax at
// most 65504 (fp16), so it lies in that range, or is 0 when absmax is infinite
// (then y = q * inf is q / 0: +-inf, NaN for a zero q), or NaN when the row
// holds a NaN (then every q is NaN, and so is y). A zero q is returned as it
// is (the fma would turn -0 into +0).
struct RowDivisor {
  float scale, inv;
  __device__ explicit RowDivisor(float s) : scale(s), inv(1.0f / s) {}
  __device__ float operator()(float q) const {
    const float y = __fmul_rn(q, inv);
    if (scale == 0.0f) return y;
    const float quotient = __fmaf_rn(__fmaf_rn(-scale, y, q), inv, y);
    return q == 0.0f ? q : quotient;
  }
};

// What a vectorised row kernel (RowVecBody) takes as its row: x; x + delta,
// each sum rounded to fp16 once and stored back into x (the residual add of one
// sub-block, fused with the norm of the next); or max(gate, 0)^2 * up, each
// product rounded to fp16 once (BitNet b1.58's gate, as Relu2MulKernel).
enum class RowInput { kX, kAddDelta, kRelu2Mul };

// One row over 16-byte vectors: the input above, then RMSNorm
// (x * rsqrt(mean(x^2) + eps) * weight, rounded to fp16) if kNorm, then the
// per-row absmax quantization of QuantizeRowsKernel (on the fp16 values the
// norm gives) if kQuantize. Each step rounds exactly where its own kernel
// does, so a fused call gives the unfused sequence's results bit for bit.
// All loads are issued before the first barrier (inside BlockReduce) and each
// vector is read and written by one thread, so out may alias x (or up) unless
// the residual add writes x. `other` is delta or up.
template <RowInput kIn, bool kNorm, bool kQuantize>
__device__ __forceinline__ void RowVecBody(uint4* x, const uint4* __restrict__ other, const void* weight,
                                           int weight_f32, uint4* out, int vecs, float eps, float qmax) {
  __shared__ float scratch[32];
  const int64_t base = static_cast<int64_t>(blockIdx.x) * vecs;
  uint4 xv[kRowVecs];
  float w[kRowVecs][8];
  float mx = 0.0f;
#pragma unroll
  for (int i = 0; i < kRowVecs; ++i) {
    const int v = threadIdx.x + i * blockDim.x;
    if (v < vecs) {
      xv[i] = x[base + v];
      if constexpr (kIn != RowInput::kX) {
        const uint4 d = other[base + v];
        const uint32_t dw[4] = {d.x, d.y, d.z, d.w};
        xv[i] = MapHalfPairs(xv[i], [&](int p, float2 fa) {
          const float2 fd = HalvesToFloats(dw[p]);
          if constexpr (kIn == RowInput::kAddDelta) return __floats2half2_rn(fa.x + fd.x, fa.y + fd.y);
          const float g0 = fmaxf(fa.x, 0.0f), g1 = fmaxf(fa.y, 0.0f);
          return __floats2half2_rn(g0 * g0 * fd.x, g1 * g1 * fd.y);
        });
        if constexpr (kIn == RowInput::kAddDelta) x[base + v] = xv[i];
      }
      if constexpr (kNorm) {
        if (weight_f32) {
          const float4 lo = static_cast<const float4*>(weight)[2 * v];
          const float4 hi = static_cast<const float4*>(weight)[2 * v + 1];
          w[i][0] = lo.x, w[i][1] = lo.y, w[i][2] = lo.z, w[i][3] = lo.w;
          w[i][4] = hi.x, w[i][5] = hi.y, w[i][6] = hi.z, w[i][7] = hi.w;
        } else {
          const uint4 h = static_cast<const uint4*>(weight)[v];
          const uint32_t hw[4] = {h.x, h.y, h.z, h.w};
#pragma unroll
          for (int p = 0; p < 4; ++p) {
            const float2 f = HalvesToFloats(hw[p]);
            w[i][2 * p] = f.x, w[i][2 * p + 1] = f.y;
          }
        }
      } else if constexpr (kQuantize) {
        mx = AbsMax(mx, xv[i]);
      }
    }
  }
  if constexpr (kNorm) {
    float ss = 0.0f;
#pragma unroll
    for (int i = 0; i < kRowVecs; ++i) {
      if (threadIdx.x + i * blockDim.x < vecs) {
        const uint32_t hw[4] = {xv[i].x, xv[i].y, xv[i].z, xv[i].w};
#pragma unroll
        for (int p = 0; p < 4; ++p) {
          const float2 f = HalvesToFloats(hw[p]);
          ss += f.x * f.x + f.y * f.y;
        }
      }
    }
    const float inv = rsqrtf(BlockReduce<false>(ss, scratch) / (8.0f * vecs) + eps);
#pragma unroll
    for (int i = 0; i < kRowVecs; ++i) {
      const int v = threadIdx.x + i * blockDim.x;
      if (v < vecs) {
        const uint4 normed = MapHalfPairs(xv[i], [&](int p, float2 f) {
          return __floats2half2_rn(f.x * inv * w[i][2 * p], f.y * inv * w[i][2 * p + 1]);
        });
        if constexpr (kQuantize) {
          xv[i] = normed;
          mx = AbsMax(mx, normed);
        } else {
          out[base + v] = normed;
        }
      }
    }
  }
  if constexpr (kQuantize) {
    const float scale = RowQuantScale(BlockReduce<true>(mx, scratch), qmax);
    const RowDivisor dequantize(scale);
#pragma unroll
    for (int i = 0; i < kRowVecs; ++i) {
      const int v = threadIdx.x + i * blockDim.x;
      if (v < vecs) {
        out[base + v] = MapHalfPairs(xv[i], [&](int, float2 f) {
          const float a = QuantLevel(f.x * scale, qmax);
          const float b = QuantLevel(f.y * scale, qmax);
          return __floats2half2_rn(dequantize(a), dequantize(b));
        });
      }
    }
  }
}

// RMSNorm of x, or of x += delta (kAdd), over 16-byte vectors (RowVecBody).
template <bool kAdd>
__global__ void RmsNormVecKernel(uint4* x, const uint4* __restrict__ delta, const void* weight, int weight_f32,
                                 uint4* out, int vecs, float eps) {
  DependentPrologue();
  RowVecBody<kAdd ? RowInput::kAddDelta : RowInput::kX, true, false>(x, delta, weight, weight_f32, out, vecs, eps,
                                                                      0.0f);
}

// The fused row ops (trirun_op_rmsnorm_quantize, trirun_op_add_rmsnorm_quantize,
// trirun_op_relu2_mul_rmsnorm): RowVecBody with its input, the norm and the
// quantization where asked for.
template <RowInput kIn, bool kQuantize>
__global__ void RowNormVecKernel(uint4* x, const uint4* __restrict__ other, const void* weight, int weight_f32,
                                 uint4* out, int vecs, float eps, float qmax) {
  DependentPrologue();
  RowVecBody<kIn, true, kQuantize>(x, other, weight, weight_f32, out, vecs, eps, qmax);
}

bool Aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// RoPE arithmetic shared by RopeKernel and the fused decode attention, so that both give the same
// bits. cos/sin of pair i at position `pos`: the angle in fp64, as position * frequency reaches
// thousands of radians, where fp32 would lose about 1e-4 rad of phase.
__device__ __forceinline__ void RopeCosSin(int pos, int i, int head_dim, double log_theta, float* cf, float* sf) {
  const double angle = pos * exp(-log_theta * (2.0 * i) / head_dim);
  double s, c;
  sincos(angle, &s, &c);
  *cf = static_cast<float>(c);
  *sf = static_cast<float>(s);
}

// Element indices of pair i: style 0 interleaved (2i, 2i+1), style 1 rotate-half (i, i + d/2).
__device__ __forceinline__ void RopePair(int style, int i, int half_dim, int* a, int* b) {
  *a = style == 0 ? 2 * i : i;
  *b = style == 0 ? 2 * i + 1 : i + half_dim;
}

// Rotates one pair, each output rounded to fp16 once. The roundings are spelled out (__fmul_rn,
// __fmaf_rn): plain `x0 * cf - x1 * sf` leaves ptxas free to contract either product, possibly
// differently in different kernels.
__device__ __forceinline__ void RopeRotate(__half x0h, __half x1h, float cf, float sf, __half* y0, __half* y1) {
  const float x0 = __half2float(x0h), x1 = __half2float(x1h);
  *y0 = __float2half(__fmaf_rn(x0, cf, -__fmul_rn(x1, sf)));
  *y1 = __float2half(__fmaf_rn(x0, sf, __fmul_rn(x1, cf)));
}

__global__ void RopeKernel(__half* x, const int32_t* positions, int tokens, int heads, int head_dim, double log_theta,
                           int style) {
  DependentPrologue();
  const int half_dim = head_dim / 2;
  const int64_t total = static_cast<int64_t>(tokens) * heads * half_dim;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int i = static_cast<int>(idx % half_dim);
    const int64_t row = idx / half_dim;  // token * heads + head
    const int token = static_cast<int>(row / heads);
    float cf, sf;
    RopeCosSin(positions[token], i, head_dim, log_theta, &cf, &sf);
    __half* h = x + row * head_dim;
    int a, b;
    RopePair(style, i, half_dim, &a, &b);
    RopeRotate(h[a], h[b], cf, sf, &h[a], &h[b]);
  }
}

__global__ void SiluMulKernel(const __half* gate, const __half* up, __half* out, int64_t n) {
  DependentPrologue();
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = __half2float(gate[i]);
    out[i] = __float2half(g / (1.0f + __expf(-g)) * __half2float(up[i]));
  }
}

// Per-row absmax fake quantization (BitNet b1.58's 8-bit activations, transformers' ActQuant):
// each row is scaled so that its largest magnitude maps to qmax, rounded to an integer (rintf:
// ties to even, as torch.round), clamped to [-qmax - 1, qmax] and scaled back, in fp32. Only the
// rounding is emulated: the values stay fp16 for the matmul that reads them. One block per row,
// like RmsNormKernel; every element is read before any is written, so out may alias x.
__global__ void QuantizeRowsKernel(const __half* x, __half* out, int dim, float qmax) {
  DependentPrologue();
  __shared__ float scratch[32];
  const int64_t base = static_cast<int64_t>(blockIdx.x) * dim;
  float mx = 0.0f;
  for (int j = threadIdx.x; j < dim; j += blockDim.x) mx = MaxKeepNaN(mx, fabsf(__half2float(x[base + j])));
  const float scale = RowQuantScale(BlockReduce<true>(mx, scratch), qmax);
  const RowDivisor dequantize(scale);
  for (int j = threadIdx.x; j < dim; j += blockDim.x) {
    const float q = QuantLevel(__half2float(x[base + j]) * scale, qmax);
    out[base + j] = __float2half(dequantize(q));
  }
}

// The same over 16-byte vectors (RowVecBody), each thread's loads all issued before the barrier (the
// scalar version waits for one load per iteration, ~6 us a row at dim 2560, measured in a BitNet
// decoding step). Same arithmetic, so the same results.
__global__ void QuantizeRowsVecKernel(const uint4* x, uint4* out, int vecs, float qmax) {
  DependentPrologue();
  RowVecBody<RowInput::kX, false, true>(const_cast<uint4*>(x), nullptr, nullptr, 0, out, vecs, 0.0f, qmax);
}

// BitNet b1.58's MLP gate: squared ReLU instead of SiLU.
__global__ void Relu2MulKernel(const __half* gate, const __half* up, __half* out, int64_t n) {
  DependentPrologue();
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = fmaxf(__half2float(gate[i]), 0.0f);
    out[i] = __float2half(g * g * __half2float(up[i]));
  }
}

__global__ void AddKernel(const __half* a, const __half* b, __half* out, int64_t n) {
  DependentPrologue();
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = __float2half(__half2float(a[i]) + __half2float(b[i]));
  }
}

// Keys per batch: a warp issues the loads of kKeyBatch<CH> keys at once and
// then folds them together. With each key's loads inside the fold (the first
// version) every key cost a memory round trip, and a decoding step has only a
// few keys per warp, so the kernel was mostly those round trips (~7 us of a 7B
// block's ~70 us in a graphed step).
template <int CH>
constexpr int kKeyBatch = CH <= 4 ? 8 : 4;

// Loads keys s = first, first + W, ... (KB of them, those < end) of k
// and v (row s at s * stride) into registers; the others are zeros.
template <int CH, int KB, int W>
__device__ __forceinline__ void LoadKeys(const __half* k, const __half* v, int64_t stride, int first, int end,
                                         int head_dim, int lane, __half (&kr)[KB][CH], __half (&vr)[KB][CH]) {
#pragma unroll
  for (int p = 0; p < KB; p++) {
    const int s = first + p * W;
#pragma unroll
    for (int c = 0; c < CH; c++) {
      const int j = lane + 32 * c;
      const bool in = s < end && j < head_dim;
      kr[p][c] = in ? k[s * stride + j] : __float2half(0.0f);
      vr[p][c] = in ? v[s * stride + j] : __float2half(0.0f);
    }
  }
}

// One batch of a warp's online softmax: keys first, first + W, ...
// (those < end; first < end), their elements in registers (lane holds dims
// lane, lane + 32, ...). All scores first, as independent dot products whose
// warp sums (xor 16, 8, 4, 2, 1) interleave; then one new running max m, one
// rescaling of the sum l and the accumulators, and the batch's weighted values.
// Folding key by key made every key a chain of five shuffles and two
// exponentials (~200 cycles, ~1 us per batch of 8). All attention paths
// (prefill, decode, batched decode with RoPE) fold the same keys in the same
// batches through here, so they give the same bits.
template <int CH, int KB, int W>
__device__ __forceinline__ void FoldKeys(const float* qs, const __half (&kr)[KB][CH], const __half (&vr)[KB][CH],
                                         int first, int end, int head_dim, int lane, float& m, float& l,
                                         float (&acc)[kMaxDimChunks]) {
  float qr[CH];
#pragma unroll
  for (int c = 0; c < CH; c++) qr[c] = lane + 32 * c < head_dim ? qs[lane + 32 * c] : 0.0f;
  float score[KB];
#pragma unroll
  for (int p = 0; p < KB; p++) {
    float dot = 0.0f;
#pragma unroll
    for (int c = 0; c < CH; c++) dot += qr[c] * __half2float(kr[p][c]);  // zeros past head_dim
    score[p] = dot;
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
#pragma unroll
    for (int p = 0; p < KB; p++) score[p] += __shfl_xor_sync(0xffffffffu, score[p], o);
  float m_new = m;
#pragma unroll
  for (int p = 0; p < KB; p++)
    if (first + p * W < end) m_new = fmaxf(m_new, score[p]);
  const float correction = __expf(m - m_new);  // 0 on the first batch (m = -inf)
  float sum = 0.0f;
  float batch_acc[CH];
#pragma unroll
  for (int c = 0; c < CH; c++) batch_acc[c] = 0.0f;
#pragma unroll
  for (int p = 0; p < KB; p++) {
    if (first + p * W < end) {
      const float e = __expf(score[p] - m_new);
      sum += e;
#pragma unroll
      for (int c = 0; c < CH; c++) batch_acc[c] += e * __half2float(vr[p][c]);
    }
  }
  l = l * correction + sum;
#pragma unroll
  for (int c = 0; c < CH; c++) acc[c] = acc[c] * correction + batch_acc[c];
  m = m_new;
}

// A warp's keys first, first + W, ... < end, batch by batch; the first
// batch is already in kr/vr (its loads were issued before q was ready). Keys
// at or past load_end are not read from k/v: `patch(s0, kr, vr)` may put them
// in (the fused decode's new key); elsewhere load_end = end.
template <int CH, int KB, int W, typename Patch>
__device__ __forceinline__ void AttendKeys(const float* qs, const __half* k, const __half* v, int64_t stride, int first,
                                           int load_end, int end, int head_dim, int lane, __half (&kr)[KB][CH],
                                           __half (&vr)[KB][CH], float& m, float& l, float (&acc)[kMaxDimChunks],
                                           Patch patch) {
  constexpr int kStep = KB * W;
  for (int s0 = first; s0 < end; s0 += kStep) {
    if (s0 != first) LoadKeys<CH, KB, W>(k, v, stride, s0, load_end, head_dim, lane, kr, vr);
    patch(s0, kr, vr);
    FoldKeys<CH, KB, W>(qs, kr, vr, s0, end, head_dim, lane, m, l, acc);
  }
}

struct NoPatch {
  template <typename Regs>
  __device__ void operator()(int, Regs&, Regs&) const {}
};

// Merges the warps' partial results through shared memory and writes the
// output row; every thread of the block takes part.
template <int W>
__device__ __forceinline__ void MergeWarps(float m, float l, const float (&acc)[kMaxDimChunks], int head_dim, int lane,
                                           int warp, int chunks, float* warp_m, float* warp_l,
                                           float (*warp_acc)[TRIRUN_OPS_MAX_HEAD_DIM], __half* orow) {
  if (lane == 0) {
    warp_m[warp] = m;
    warp_l[warp] = l;
  }
#pragma unroll
  for (int c = 0; c < kMaxDimChunks; c++) {
    const int j = lane + 32 * c;
    if (c < chunks && j < head_dim) warp_acc[warp][j] = acc[c];
  }
  __syncthreads();
  // Warp 0 always saw key 0, so the overall max is finite; warps that saw no
  // key have m = -inf and weigh exp(-inf) = 0.
  float m_all = -INFINITY;
  for (int w = 0; w < W; w++) m_all = fmaxf(m_all, warp_m[w]);
  float l_all = 0.0f;
  for (int w = 0; w < W; w++) l_all += warp_l[w] * __expf(warp_m[w] - m_all);
  for (int j = threadIdx.x; j < head_dim; j += blockDim.x) {
    float sum = 0.0f;
    for (int w = 0; w < W; w++) sum += warp_acc[w][j] * __expf(warp_m[w] - m_all);
    orow[j] = __float2half(sum / l_all);
  }
}

// One block per (query row, query head). Each warp walks every W-th
// key with an online softmax (running max m, sum l, and the weighted sum of
// values in per-lane accumulators: lane holds dims lane, lane+32, ...), so no
// score buffer is needed and any context length works. The warps' partial
// results are then merged through shared memory. W warps (AttentionWarpsFor):
// with 16, one batch of loads covers 128 keys (8 per warp), a short decoding
// context in one memory round trip.
//
// Batched form: blocks of sequence b use q/out rows b*nq.., the k/v rows of
// sequence b (kv_rows each), and start = starts[b] read on the device; a start
// that does not fit gives NaN rows instead of reading outside the cache.
template <int CH, int W>
__global__ void __launch_bounds__(W * 32)
    AttentionKernel(const __half* q, const __half* k, const __half* v, __half* out, int start, const int32_t* starts,
                    int nq, int kv_rows, int hq, int hkv, int head_dim) {
  constexpr int KB = kKeyBatch<CH>;
  DependentPrologue();
  __shared__ float qs[TRIRUN_OPS_MAX_HEAD_DIM];
  __shared__ float warp_m[W], warp_l[W];
  __shared__ float warp_acc[W][TRIRUN_OPS_MAX_HEAD_DIM];
  const int head = blockIdx.x % hq;
  const int seq_row = blockIdx.x / hq;  // b * nq + row
  const int seq = seq_row / nq;
  const int row = seq_row % nq;
  const int kv_head = head / (hq / hkv);
  if (starts != nullptr) start = starts[seq];
  const int last = start + row;  // causal: keys 0..last
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const float scale = rsqrtf(static_cast<float>(head_dim));
  const __half* qrow = q + (static_cast<int64_t>(seq_row) * hq + head) * head_dim;
  __half* orow = out + (static_cast<int64_t>(seq_row) * hq + head) * head_dim;
  if (start < 0 || last >= kv_rows) {
    for (int j = threadIdx.x; j < head_dim; j += blockDim.x) orow[j] = __float2half(NAN);
    return;
  }
  const int64_t kv_stride = static_cast<int64_t>(hkv) * head_dim;
  const int64_t kv_col = static_cast<int64_t>(seq) * kv_rows * kv_stride + static_cast<int64_t>(kv_head) * head_dim;
  k += kv_col;
  v += kv_col;
  // The warp's first keys are requested before q is in shared memory.
  __half kr[KB][CH], vr[KB][CH];
  LoadKeys<CH, KB, W>(k, v, kv_stride, warp, last + 1, head_dim, lane, kr, vr);
  for (int j = threadIdx.x; j < head_dim; j += blockDim.x) qs[j] = __half2float(qrow[j]) * scale;
  __syncthreads();

  const int chunks = (head_dim + 31) / 32;
  float acc[kMaxDimChunks];
#pragma unroll
  for (int c = 0; c < kMaxDimChunks; c++) acc[c] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  AttendKeys<CH, KB, W>(qs, k, v, kv_stride, warp, last + 1, last + 1, head_dim, lane, kr, vr, m, l, acc, NoPatch{});
  MergeWarps<W>(m, l, acc, head_dim, lane, warp, chunks, warp_m, warp_l, warp_acc, orow);
}

// Asks L2 for rows 0..rows-1 of one kv head's key and value caches (rows of
// `bytes` each, `stride` elements apart), spread over the block's threads. A
// prefetch only moves lines into L2, where every SM's writes land, so it may
// be issued before griddepcontrol.wait without ever showing stale data.
__device__ __forceinline__ void PrefetchCacheRowsL2(const __half* k, const __half* v, int64_t stride, int rows,
                                                    int bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  for (int i = threadIdx.x; i < 2 * rows; i += blockDim.x) {
    const __half* row = (i < rows ? k : v) + static_cast<int64_t>(i < rows ? i : i - rows) * stride;
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(row), "r"(bytes) : "memory");
  }
#endif
}

// Batched decoding with RoPE fused in: in one launch what RopeKernel on q and
// on k_new, CacheAppendKvBatchKernel and the batched AttentionKernel give
// (inside a graphed decoding step each launch costs a few microseconds).
// One block per (sequence, query head), as AttentionKernel. The block rotates
// its own q head and the new key of its kv head (the same RopeCosSin and
// RopeRotate as RopeKernel) and keeps that key and the new value in shared
// memory for key position start = starts[seq]; keys 0..start-1 come from the
// caches (written by earlier steps). Only the first query head of each kv
// group writes the new rows into the caches, and no block reads cache row
// start, so no block depends on another's writes within the launch: the new
// key goes into its batch from shared memory, so every key is folded in
// AttentionKernel's batches and order. q, k_new and v_new are only read. A
// start outside the cache gives NaN rows and writes nothing.
//
// Before griddepcontrol.wait it does what does not depend on the kernel
// before: a guess of start read past L1 (ld.cg: the real read after the wait
// must not hit a stale L1 line), the fp64 RoPE angle at the guess (recomputed
// if the real start differs), and an L2 prefetch of the cached rows that the
// batches after the first will read. That overlaps the kernel before only
// where a block is resident early; beside the 384-thread small-batch matmul
// (all 64K registers of its SM) it is not, and a 64-register form that fitted
// beside a 288-thread one was no faster (NOTES.md, session 10). The prefetch
// still serves contexts longer than one batch of loads.
template <int CH, int W>
__global__ void __launch_bounds__(W * 32)
    AttentionDecodeRopeKernel(const __half* q, const __half* k_new, const __half* v_new, __half* k_cache,
                              __half* v_cache, const int32_t* starts, __half* out, int max_t, int hq, int hkv,
                              int head_dim, double log_theta, int style) {
  static_assert(TRIRUN_OPS_MAX_HEAD_DIM / 2 <= W * 32, "one RoPE pair per thread");
  constexpr int KB = kKeyBatch<CH>;
  __shared__ float qs[TRIRUN_OPS_MAX_HEAD_DIM];
  __shared__ __half k_row[TRIRUN_OPS_MAX_HEAD_DIM], v_row[TRIRUN_OPS_MAX_HEAD_DIM];
  __shared__ float warp_m[W], warp_l[W];
  __shared__ float warp_acc[W][TRIRUN_OPS_MAX_HEAD_DIM];
  const int head = blockIdx.x % hq;
  const int seq = blockIdx.x / hq;
  const int group = hq / hkv;
  const int kv_head = head / group;
  const int half_dim = head_dim / 2;
  const int pair = threadIdx.x;  // this thread's RoPE pair, if < half_dim
  const int64_t kv_stride = static_cast<int64_t>(hkv) * head_dim;
  // This kv head's column of sequence seq's caches: row s at s * kv_stride.
  const int64_t kv_base = static_cast<int64_t>(seq) * max_t * kv_stride + static_cast<int64_t>(kv_head) * head_dim;
  const __half* k_hist = k_cache + kv_base;
  const __half* v_hist = v_cache + kv_base;

  LaunchDependents();
  const int guess = __ldcg(starts + seq);
  float cf = 0.0f, sf = 0.0f;
  if (guess >= 0 && guess < max_t) {
    const int row_bytes = head_dim * 2;
    if (guess > KB * W && row_bytes % 16 == 0 &&
        (reinterpret_cast<uintptr_t>(k_hist) | reinterpret_cast<uintptr_t>(v_hist)) % 16 == 0)
      PrefetchCacheRowsL2(k_hist, v_hist, kv_stride, guess, row_bytes);
    if (pair < half_dim) RopeCosSin(guess, pair, head_dim, log_theta, &cf, &sf);
  }
  WaitForPrerequisites();

  const int start = __ldcg(starts + seq);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const float scale = rsqrtf(static_cast<float>(head_dim));
  const __half* qrow = q + (static_cast<int64_t>(seq) * hq + head) * head_dim;
  __half* orow = out + (static_cast<int64_t>(seq) * hq + head) * head_dim;
  if (start < 0 || start >= max_t) {
    for (int j = threadIdx.x; j < head_dim; j += blockDim.x) orow[j] = __float2half(NAN);
    return;
  }
  const int64_t new_row = (static_cast<int64_t>(seq) * hkv + kv_head) * head_dim;
  const bool writer = head % group == 0;
  __half* k_dst = k_cache + kv_base + start * kv_stride;
  __half* v_dst = v_cache + kv_base + start * kv_stride;
  // The warp's first cached keys are requested before the rotation.
  __half kr[KB][CH], vr[KB][CH];
  LoadKeys<CH, KB, W>(k_hist, v_hist, kv_stride, warp, start, head_dim, lane, kr, vr);
  if (pair < half_dim) {
    // One angle for the q pair and the k pair (same position and frequency).
    if (start != guess) RopeCosSin(start, pair, head_dim, log_theta, &cf, &sf);
    int a, b;
    RopePair(style, pair, half_dim, &a, &b);
    __half qa, qb, ka, kb;
    RopeRotate(qrow[a], qrow[b], cf, sf, &qa, &qb);
    qs[a] = __half2float(qa) * scale;
    qs[b] = __half2float(qb) * scale;
    RopeRotate(k_new[new_row + a], k_new[new_row + b], cf, sf, &ka, &kb);
    k_row[a] = ka;
    k_row[b] = kb;
    if (writer) {
      k_dst[a] = ka;
      k_dst[b] = kb;
    }
  }
  for (int j = threadIdx.x; j < head_dim; j += blockDim.x) {
    const __half x = v_new[new_row + j];
    v_row[j] = x;
    if (writer) v_dst[j] = x;
  }
  __syncthreads();

  const int chunks = (head_dim + 31) / 32;
  float acc[kMaxDimChunks];
#pragma unroll
  for (int c = 0; c < kMaxDimChunks; c++) acc[c] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  // Cached rows 0..start-1 from the caches; the new key (start, the last) from
  // shared memory into the slot of its batch, in warp start % W.
  auto new_key = [&](int s0, __half(&ks)[KB][CH], __half(&vs)[KB][CH]) {
#pragma unroll
    for (int p = 0; p < KB; p++) {
      if (s0 + p * W == start) {
#pragma unroll
        for (int c = 0; c < CH; c++) {
          const int j = lane + 32 * c;
          ks[p][c] = j < head_dim ? k_row[j] : __float2half(0.0f);
          vs[p][c] = j < head_dim ? v_row[j] : __float2half(0.0f);
        }
      }
    }
  };
  AttendKeys<CH, KB, W>(qs, k_hist, v_hist, kv_stride, warp, start, start + 1, head_dim, lane, kr, vr, m, l, acc,
                        new_key);
  MergeWarps<W>(m, l, acc, head_dim, lane, warp, chunks, warp_m, warp_l, warp_acc, orow);
}

__global__ void CacheAppendKernel(const __half* src, __half* cache, int64_t n, int64_t offset) {
  DependentPrologue();
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    cache[offset + i] = src[i];
  }
}

// One new row per sequence: src row b goes to row starts[b] of sequence b's
// cache (rows rows of row_elems each); a start outside the cache writes nothing.
__global__ void CacheAppendBatchKernel(const __half* src, __half* cache, const int32_t* starts, int batch, int rows,
                                       int64_t row_elems) {
  DependentPrologue();
  const int64_t total = batch * row_elems;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = i / row_elems;
    const int start = starts[b];
    if (start < 0 || start >= rows) continue;
    cache[(b * rows + start) * row_elems + i % row_elems] = src[i];
  }
}

// Keys (blockIdx.y == 0) and values (1) of a decoding step in one launch.
__global__ void CacheAppendKvBatchKernel(const __half* k_src, __half* k_cache, const __half* v_src, __half* v_cache,
                                         const int32_t* starts, int batch, int rows, int64_t row_elems) {
  DependentPrologue();
  const __half* src = blockIdx.y == 0 ? k_src : v_src;
  __half* cache = blockIdx.y == 0 ? k_cache : v_cache;
  const int64_t total = batch * row_elems;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = i / row_elems;
    const int start = starts[b];
    if (start < 0 || start >= rows) continue;
    cache[(b * rows + start) * row_elems + i % row_elems] = src[i];
  }
}

// max and log(sum(exp(x - max))) of one row, in every thread of the block.
__device__ void RowLogSumExp(const void* logits, int is_f32, int64_t base, int vocab, float* scratch, float* max_out,
                             float* lse_out) {
  float mx = -INFINITY;
  for (int j = threadIdx.x; j < vocab; j += blockDim.x) mx = fmaxf(mx, LoadAsFloat(logits, is_f32, base + j));
  mx = BlockReduce<true>(mx, scratch);
  float sum = 0.0f;
  for (int j = threadIdx.x; j < vocab; j += blockDim.x) sum += expf(LoadAsFloat(logits, is_f32, base + j) - mx);
  sum = BlockReduce<false>(sum, scratch);
  *max_out = mx;
  *lse_out = mx + logf(sum);
}

__global__ void LogSoftmaxKernel(const void* logits, int is_f32, float* out, int vocab) {
  DependentPrologue();
  __shared__ float scratch[32];
  const int64_t base = static_cast<int64_t>(blockIdx.x) * vocab;
  float mx, lse;
  RowLogSumExp(logits, is_f32, base, vocab, scratch, &mx, &lse);
  for (int j = threadIdx.x; j < vocab; j += blockDim.x) out[base + j] = LoadAsFloat(logits, is_f32, base + j) - lse;
}

__global__ void NllKernel(const void* logits, int is_f32, const int32_t* targets, float* out, int vocab) {
  DependentPrologue();
  __shared__ float scratch[32];
  const int64_t base = static_cast<int64_t>(blockIdx.x) * vocab;
  float mx, lse;
  RowLogSumExp(logits, is_f32, base, vocab, scratch, &mx, &lse);
  if (threadIdx.x == 0) {
    const int t = targets[blockIdx.x];
    out[blockIdx.x] = (t < 0 || t >= vocab) ? NAN : lse - LoadAsFloat(logits, is_f32, base + t);
  }
}

// An attribute of the current device, read once per device and attribute
// slot (a query on every launch would put host latency before it); 0 where it
// cannot be read.
constexpr int kOpsMaxDevices = 64;
enum CachedAttr { kAttrMajor, kAttrSms, kCachedAttrs };
int CurrentDeviceAttr(CachedAttr which) {
  static std::atomic<int> cache[kCachedAttrs][kOpsMaxDevices];  // 0: not read yet
  constexpr cudaDeviceAttr kAttrs[kCachedAttrs] = {cudaDevAttrComputeCapabilityMajor, cudaDevAttrMultiProcessorCount};
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= kOpsMaxDevices) return 0;
  int value = cache[which][device].load(std::memory_order_relaxed);
  if (value == 0) {
    if (cudaDeviceGetAttribute(&value, kAttrs[which], device) != cudaSuccess || value < 0) return 0;
    cache[which][device].store(value, std::memory_order_relaxed);
  }
  return value;
}

// Whether ops on `stream` launch as programmatic dependents: compute
// capability 9.0 or later, a stream other than the legacy default one (as for
// the TriRun matmul), unless TRIRUN_PDL=0 (read once).
bool DependentLaunchFor(cudaStream_t stream) {
  static const bool off = [] {
    const char* env = std::getenv("TRIRUN_PDL");
    return env != nullptr && env[0] == '0';
  }();
  if (off || stream == nullptr || stream == cudaStreamLegacy) return false;
  return CurrentDeviceAttr(kAttrMajor) >= 9;
}

// Launches an op kernel, as a programmatic dependent of the kernel before it
// where DependentLaunchFor says so: its launch then overlaps that kernel's
// last blocks (inside a decoding step's graph, ~1 us per kernel boundary),
// and DependentPrologue makes it wait for that kernel's results.
template <typename... Params, typename... Args>
cudaError_t LaunchOp(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t stream, Args... args) {
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = 0;
  config.stream = stream;
  config.attrs = &attr;
  config.numAttrs = DependentLaunchFor(stream) ? 1 : 0;
  const cudaError_t err = cudaLaunchKernelEx(&config, kernel, args...);
  // Clear the runtime's last error too, as cudaGetLastError after <<<>>> did.
  const cudaError_t last = cudaGetLastError();
  return err != cudaSuccess ? err : last;
}

// Warps per attention block: 16 while the launch's blocks fit one per SM (a
// decoding step at small batch: 16 x 8 keys in one batch of loads per block,
// each warp half the fold of 8 warps), 8 otherwise: a 512-thread block takes
// all 64K registers of an SM, so large grids (7B at batch 16: 512 blocks) ran
// in twice the waves (H100, 7B step at batch 16: 3.14 ms against 2.89 with 8).
// The results depend on the warp count (each warp folds its own keys), so
// paths compare bit for bit only at the same count.
int AttentionWarpsFor(int64_t blocks) {
  const int sms = CurrentDeviceAttr(kAttrSms);
  return sms > 0 && blocks <= sms ? 16 : 8;
}

// Launches one of an attention kernel's instances (same signature for every
// <chunks, warps>): 4 chunks per lane up to head_dim 128, and the warp count above.
template <typename Kernel, typename... Args>
cudaError_t LaunchAttention(int64_t blocks, int head_dim, const Kernel (&instances)[2][2], cudaStream_t stream,
                            Args... args) {
  const int warps = AttentionWarpsFor(blocks);
  const Kernel kernel = instances[head_dim <= 128 ? 0 : 1][warps == 16 ? 1 : 0];
  return LaunchOp(kernel, static_cast<unsigned>(blocks), warps * 32, stream, args...);
}

using AttentionFn = decltype(&AttentionKernel<4, 8>);
constexpr AttentionFn kAttentionInstances[2][2] = {
    {AttentionKernel<4, 8>, AttentionKernel<4, 16>},
    {AttentionKernel<kMaxDimChunks, 8>, AttentionKernel<kMaxDimChunks, 16>}};
using DecodeRopeFn = decltype(&AttentionDecodeRopeKernel<4, 8>);
constexpr DecodeRopeFn kDecodeRopeInstances[2][2] = {
    {AttentionDecodeRopeKernel<4, 8>, AttentionDecodeRopeKernel<4, 16>},
    {AttentionDecodeRopeKernel<kMaxDimChunks, 8>, AttentionDecodeRopeKernel<kMaxDimChunks, 16>}};

// The fused row ops: one RowNormVecKernel launch where the row fits it, else
// the unfused kernels one after the other (the same results either way).
bool RowFits(int dim) { return dim % 8 == 0 && dim / 8 <= kRowThreads * kRowVecs; }
float QuantizeMax(int bits) { return static_cast<float>((1 << (bits - 1)) - 1); }
// The fused row ops' shared arguments: rows and dim positive, bits 0 (none) or 2..8.
bool RowNormArgsValid(int rows, int dim, int bits) {
  return rows > 0 && dim > 0 && (bits == 0 || (bits >= 2 && bits <= 8));
}
// The fallback's last step: quantize out in place (bits > 0) once what came before succeeded.
cudaError_t QuantizeAfter(cudaError_t err, __half* out, int rows, int dim, int bits, cudaStream_t stream) {
  return err != cudaSuccess || bits == 0 ? err : trirun_op_quantize_rows(out, out, rows, dim, bits, stream);
}

template <RowInput kIn>
cudaError_t LaunchRowNorm(__half* x, const __half* other, const void* weight, int weight_f32, __half* out, int rows,
                          int dim, float eps, int bits, cudaStream_t stream) {
  const float qmax = bits > 0 ? QuantizeMax(bits) : 0.0f;
  auto kernel = bits > 0 ? RowNormVecKernel<kIn, true> : RowNormVecKernel<kIn, false>;
  return LaunchOp(kernel, rows, kRowThreads, stream, reinterpret_cast<uint4*>(x), reinterpret_cast<const uint4*>(other),
                  weight, weight_f32, reinterpret_cast<uint4*>(out), dim / 8, eps, qmax);
}
}  // namespace

extern "C" {

cudaError_t trirun_op_embedding(const int32_t* ids, const __half* table, __half* out, int n, int vocab, int dim,
                                cudaStream_t stream) {
  if (n <= 0 || dim <= 0 || vocab <= 0) return cudaErrorInvalidValue;
  if (dim % 8 == 0 && dim / 8 <= kRowThreads * kRowVecs && Aligned16(table) && Aligned16(out)) {
    return LaunchOp(EmbeddingVecKernel, n, kRowThreads, stream, ids, reinterpret_cast<const uint4*>(table),
                    reinterpret_cast<uint4*>(out), vocab, dim / 8);
  }
  return LaunchOp(EmbeddingKernel, n, dim < 256 ? 128 : 256, stream, ids, table, out, vocab, dim);
}

cudaError_t trirun_op_rmsnorm(const __half* x, const void* weight, int weight_f32, __half* out, int rows, int dim,
                              float eps, cudaStream_t stream) {
  if (rows <= 0 || dim <= 0) return cudaErrorInvalidValue;
  if (dim % 8 == 0 && dim / 8 <= kRowThreads * kRowVecs && Aligned16(x) && Aligned16(weight) && Aligned16(out)) {
    // x is only read without kAdd.
    return LaunchOp(RmsNormVecKernel<false>, rows, kRowThreads, stream,
                    reinterpret_cast<uint4*>(const_cast<__half*>(x)), nullptr, weight, weight_f32,
                    reinterpret_cast<uint4*>(out), dim / 8, eps);
  }
  return LaunchOp(RmsNormKernel, rows, kRowThreads, stream, x, weight, weight_f32, out, dim, eps);
}

cudaError_t trirun_op_add_rmsnorm(__half* x, const __half* delta, const void* weight, int weight_f32, __half* out,
                                  int rows, int dim, float eps, cudaStream_t stream) {
  if (rows <= 0 || dim <= 0) return cudaErrorInvalidValue;
  if (dim % 8 == 0 && dim / 8 <= kRowThreads * kRowVecs && Aligned16(x) && Aligned16(delta) && Aligned16(weight) &&
      Aligned16(out)) {
    return LaunchOp(RmsNormVecKernel<true>, rows, kRowThreads, stream, reinterpret_cast<uint4*>(x),
                    reinterpret_cast<const uint4*>(delta), weight, weight_f32, reinterpret_cast<uint4*>(out), dim / 8,
                    eps);
  }
  // Other shapes: the two kernels one after the other (same results).
  const int64_t n = static_cast<int64_t>(rows) * dim;
  const cudaError_t err = LaunchOp(AddKernel, GridFor(n, 256), 256, stream, x, delta, x, n);
  if (err != cudaSuccess) return err;
  return LaunchOp(RmsNormKernel, rows, kRowThreads, stream, x, weight, weight_f32, out, dim, eps);
}


cudaError_t trirun_op_rmsnorm_quantize(const __half* x, const void* weight, int weight_f32, __half* out, int rows,
                                       int dim, float eps, int bits, cudaStream_t stream) {
  if (!RowNormArgsValid(rows, dim, bits)) return cudaErrorInvalidValue;
  if (RowFits(dim) && Aligned16(x) && Aligned16(weight) && Aligned16(out)) {
    // x is only read (RowInput::kX).
    return LaunchRowNorm<RowInput::kX>(const_cast<__half*>(x), nullptr, weight, weight_f32, out, rows, dim, eps, bits,
                                       stream);
  }
  const cudaError_t err = trirun_op_rmsnorm(x, weight, weight_f32, out, rows, dim, eps, stream);
  return QuantizeAfter(err, out, rows, dim, bits, stream);
}

cudaError_t trirun_op_add_rmsnorm_quantize(__half* x, const __half* delta, const void* weight, int weight_f32,
                                           __half* out, int rows, int dim, float eps, int bits, cudaStream_t stream) {
  if (!RowNormArgsValid(rows, dim, bits)) return cudaErrorInvalidValue;
  if (RowFits(dim) && Aligned16(x) && Aligned16(delta) && Aligned16(weight) && Aligned16(out)) {
    return LaunchRowNorm<RowInput::kAddDelta>(x, delta, weight, weight_f32, out, rows, dim, eps, bits, stream);
  }
  const cudaError_t err = trirun_op_add_rmsnorm(x, delta, weight, weight_f32, out, rows, dim, eps, stream);
  return QuantizeAfter(err, out, rows, dim, bits, stream);
}

cudaError_t trirun_op_relu2_mul_rmsnorm(const __half* gate, const __half* up, const void* weight, int weight_f32,
                                        __half* out, int rows, int dim, float eps, int bits, cudaStream_t stream) {
  if (!RowNormArgsValid(rows, dim, bits)) return cudaErrorInvalidValue;
  if (RowFits(dim) && Aligned16(gate) && Aligned16(up) && Aligned16(weight) && Aligned16(out)) {
    // gate is only read (RowInput::kRelu2Mul).
    return LaunchRowNorm<RowInput::kRelu2Mul>(const_cast<__half*>(gate), up, weight, weight_f32, out, rows, dim, eps,
                                              bits, stream);
  }
  cudaError_t err = trirun_op_relu2_mul(gate, up, out, static_cast<int64_t>(rows) * dim, stream);
  if (err == cudaSuccess) err = trirun_op_rmsnorm(out, weight, weight_f32, out, rows, dim, eps, stream);
  return QuantizeAfter(err, out, rows, dim, bits, stream);
}

cudaError_t trirun_op_rope(__half* x, const int32_t* positions, int tokens, int heads, int head_dim, float theta,
                           int style, cudaStream_t stream) {
  if (tokens <= 0 || heads <= 0 || head_dim <= 0 || head_dim % 2 != 0 || !(theta > 0.0f) ||
      (style != 0 && style != 1)) {
    return cudaErrorInvalidValue;
  }
  const int64_t total = static_cast<int64_t>(tokens) * heads * (head_dim / 2);
  return LaunchOp(RopeKernel, GridFor(total, 256), 256, stream, x, positions, tokens, heads, head_dim,
                  std::log(static_cast<double>(theta)), style);
}

cudaError_t trirun_op_silu_mul(const __half* gate, const __half* up, __half* out, int64_t n, cudaStream_t stream) {
  if (n <= 0) return cudaErrorInvalidValue;
  return LaunchOp(SiluMulKernel, GridFor(n, 256), 256, stream, gate, up, out, n);
}

cudaError_t trirun_op_quantize_rows(const __half* x, __half* out, int rows, int dim, int bits, cudaStream_t stream) {
  if (rows <= 0 || dim <= 0 || bits < 2 || bits > 8) return cudaErrorInvalidValue;
  const float qmax = static_cast<float>((1 << (bits - 1)) - 1);
  if (dim % 8 == 0 && dim / 8 <= kRowThreads * kRowVecs && Aligned16(x) && Aligned16(out)) {
    return LaunchOp(QuantizeRowsVecKernel, rows, kRowThreads, stream, reinterpret_cast<const uint4*>(x),
                    reinterpret_cast<uint4*>(out), dim / 8, qmax);
  }
  return LaunchOp(QuantizeRowsKernel, rows, kRowThreads, stream, x, out, dim, qmax);
}

cudaError_t trirun_op_relu2_mul(const __half* gate, const __half* up, __half* out, int64_t n,
                                cudaStream_t stream) {
  if (n <= 0) return cudaErrorInvalidValue;
  return LaunchOp(Relu2MulKernel, GridFor(n, 256), 256, stream, gate, up, out, n);
}

cudaError_t trirun_op_add(const __half* a, const __half* b, __half* out, int64_t n, cudaStream_t stream) {
  if (n <= 0) return cudaErrorInvalidValue;
  return LaunchOp(AddKernel, GridFor(n, 256), 256, stream, a, b, out, n);
}

cudaError_t trirun_op_attention(const __half* q, const __half* k, const __half* v, __half* out, int nq, int start,
                                int hq, int hkv, int head_dim, cudaStream_t stream) {
  if (nq <= 0 || start < 0 || hq <= 0 || hkv <= 0 || hq % hkv != 0 || head_dim <= 0 ||
      head_dim > TRIRUN_OPS_MAX_HEAD_DIM || static_cast<int64_t>(nq) * hq > 2147483647) {
    return cudaErrorInvalidValue;
  }
  // k and v need start + nq rows; the kernel only reads rows 0..start+nq-1.
  return LaunchAttention(nq * hq, head_dim, kAttentionInstances, stream, q, k, v, out, start, nullptr, nq, start + nq,
                         hq, hkv, head_dim);
}

cudaError_t trirun_op_attention_decode_batch(const __half* q, const __half* k_cache, const __half* v_cache,
                                             const int32_t* positions, __half* out, int batch, int max_t, int hq,
                                             int hkv, int head_dim, cudaStream_t stream) {
  if (batch <= 0 || max_t <= 0 || hq <= 0 || hkv <= 0 || hq % hkv != 0 || head_dim <= 0 ||
      head_dim > TRIRUN_OPS_MAX_HEAD_DIM || static_cast<int64_t>(batch) * hq > 2147483647) {
    return cudaErrorInvalidValue;
  }
  return LaunchAttention(batch * hq, head_dim, kAttentionInstances, stream, q, k_cache, v_cache, out, 0, positions, 1,
                         max_t, hq, hkv, head_dim);
}

cudaError_t trirun_op_attention_decode_batch_rope(const __half* q, const __half* k_new, const __half* v_new,
                                                  __half* k_cache, __half* v_cache, const int32_t* positions,
                                                  __half* out, int batch, int max_t, int hq, int hkv, int head_dim,
                                                  float theta, int style, cudaStream_t stream) {
  if (batch <= 0 || max_t <= 0 || hq <= 0 || hkv <= 0 || hq % hkv != 0 || head_dim <= 0 || head_dim % 2 != 0 ||
      head_dim > TRIRUN_OPS_MAX_HEAD_DIM || static_cast<int64_t>(batch) * hq > 2147483647 || !(theta > 0.0f) ||
      (style != 0 && style != 1)) {
    return cudaErrorInvalidValue;
  }
  // log(theta) as trirun_op_rope computes it, so that the angles match bit for bit.
  const double log_theta = std::log(static_cast<double>(theta));
  return LaunchAttention(batch * hq, head_dim, kDecodeRopeInstances, stream, q, k_new, v_new, k_cache, v_cache,
                         positions, out, max_t, hq, hkv, head_dim, log_theta, style);
}

cudaError_t trirun_op_cache_append_batch(const __half* src, __half* cache, const int32_t* positions, int batch,
                                         int max_t, int hkv, int head_dim, cudaStream_t stream) {
  if (batch <= 0 || max_t <= 0 || hkv <= 0 || head_dim <= 0) return cudaErrorInvalidValue;
  const int64_t row = static_cast<int64_t>(hkv) * head_dim;
  return LaunchOp(CacheAppendBatchKernel, GridFor(batch * row, 256), 256, stream, src, cache, positions, batch, max_t,
                  row);
}

cudaError_t trirun_op_cache_append_kv_batch(const __half* k_src, __half* k_cache, const __half* v_src,
                                            __half* v_cache, const int32_t* positions, int batch, int max_t, int hkv,
                                            int head_dim, cudaStream_t stream) {
  if (batch <= 0 || max_t <= 0 || hkv <= 0 || head_dim <= 0) return cudaErrorInvalidValue;
  const int64_t row = static_cast<int64_t>(hkv) * head_dim;
  const dim3 grid(GridFor(batch * row, 256), 2);
  return LaunchOp(CacheAppendKvBatchKernel, grid, 256, stream, k_src, k_cache, v_src, v_cache, positions, batch, max_t,
                  row);
}

cudaError_t trirun_op_cache_append(const __half* src, __half* cache, int n, int start, int hkv, int head_dim,
                                   cudaStream_t stream) {
  if (n <= 0 || start < 0 || hkv <= 0 || head_dim <= 0) return cudaErrorInvalidValue;
  const int64_t row = static_cast<int64_t>(hkv) * head_dim;
  const int64_t count = n * row;
  return LaunchOp(CacheAppendKernel, GridFor(count, 256), 256, stream, src, cache, count, start * row);
}

cudaError_t trirun_op_log_softmax(const void* logits, int logits_f32, float* out, int rows, int vocab,
                                  cudaStream_t stream) {
  if (rows <= 0 || vocab <= 0) return cudaErrorInvalidValue;
  return LaunchOp(LogSoftmaxKernel, rows, kRowThreads, stream, logits, logits_f32, out, vocab);
}

cudaError_t trirun_op_nll(const void* logits, int logits_f32, const int32_t* targets, float* out, int rows,
                          int vocab, cudaStream_t stream) {
  if (rows <= 0 || vocab <= 0) return cudaErrorInvalidValue;
  return LaunchOp(NllKernel, rows, kRowThreads, stream, logits, logits_f32, targets, out, vocab);
}

}  // extern "C"

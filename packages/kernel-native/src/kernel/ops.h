// Model operations for a Llama-architecture forward pass on the GPU: fp16
// storage, fp32 math. A plain C interface (raw device pointers, sizes, a
// stream) so that the Node-API glue stays thin. Every function only launches
// (asynchronous on `stream`) and returns the launch status; the caller checks
// shapes, bounds and alignment first. Tensors are dense and row-major.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#ifdef __cplusplus
extern "C" {
#endif

// Largest head_dim of the attention kernels (one fp32 accumulator per thread
// and dimension chunk; see ops.cu).
#define TRIRUN_OPS_MAX_HEAD_DIM 256

// out (n, dim) = table[ids[i]] (vocab, dim). An id outside 0..vocab-1 gives a
// row of NaN (never a read outside the table).
cudaError_t trirun_op_embedding(const int32_t* ids, const __half* table, __half* out, int n, int vocab, int dim,
                                cudaStream_t stream);

// out (rows, dim) = x * rsqrt(mean(x^2) + eps) * weight; weight is fp16
// (weight_f32 == 0) or fp32 (weight_f32 != 0), length dim. out may alias x.
cudaError_t trirun_op_rmsnorm(const __half* x, const void* weight, int weight_f32, __half* out, int rows, int dim,
                              float eps, cudaStream_t stream);

// Residual add and RMSNorm in one pass: x (rows, dim) = x + delta (rounded to
// fp16, as trirun_op_add), then out = rmsnorm(x) * weight (as trirun_op_rmsnorm).
// out must not overlap x or delta.
cudaError_t trirun_op_add_rmsnorm(__half* x, const __half* delta, const void* weight, int weight_f32, __half* out,
                                  int rows, int dim, float eps, cudaStream_t stream);

// Rotary position embedding in place on x (tokens, heads, head_dim), token t
// at position positions[t]. Frequency i = theta^(-2i / head_dim). style 0:
// interleaved pairs (2i, 2i+1) (llama2.c, Meta); style 1: rotate-half pairs
// (i, i + head_dim/2) (Hugging Face). head_dim is even.
cudaError_t trirun_op_rope(__half* x, const int32_t* positions, int tokens, int heads, int head_dim, float theta,
                           int style, cudaStream_t stream);

// out[i] = silu(gate[i]) * up[i], n elements. out may alias gate or up.
cudaError_t trirun_op_silu_mul(const __half* gate, const __half* up, __half* out, int64_t n, cudaStream_t stream);

// Per-row absmax fake quantization to `bits` (2..8) signed bits, x and out (rows, dim): with
// s = (2^(bits-1) - 1) / max(max_j |x[r][j]|, 1e-5), out = clamp(round_half_even(x * s), -2^(bits-1),
// 2^(bits-1) - 1) / s in fp32, rounded once to fp16. out may alias x.
cudaError_t trirun_op_quantize_rows(const __half* x, __half* out, int rows, int dim, int bits, cudaStream_t stream);

// out[i] = max(gate[i], 0)^2 * up[i] (BitNet b1.58's gate), n elements. out may alias gate or up.
cudaError_t trirun_op_relu2_mul(const __half* gate, const __half* up, __half* out, int64_t n, cudaStream_t stream);

// Fused row ops, one launch where the row fits the vectorised row kernel (dim
// a multiple of 8, at most 8192, 16-byte aligned operands), else the unfused
// ops one after the other; the same results as the unfused sequence bit for
// bit either way. `bits` 2..8 quantizes the result as trirun_op_quantize_rows
// does; 0 leaves it as the norm gives it.
//   rmsnorm_quantize: trirun_op_rmsnorm (x -> out), then the quantization of
//     out. out may alias x.
//   add_rmsnorm_quantize: trirun_op_add_rmsnorm (x += delta; out = norm(x)),
//     then the quantization of out. out must not overlap x or delta.
//   relu2_mul_rmsnorm: trirun_op_relu2_mul (gate, up -> out, rows x dim), then
//     trirun_op_rmsnorm on out, then the quantization (BitNet b1.58's MLP:
//     gate, sub-norm, 8-bit activations of down_proj). out may alias gate or up.
cudaError_t trirun_op_rmsnorm_quantize(const __half* x, const void* weight, int weight_f32, __half* out, int rows,
                                       int dim, float eps, int bits, cudaStream_t stream);
cudaError_t trirun_op_add_rmsnorm_quantize(__half* x, const __half* delta, const void* weight, int weight_f32,
                                           __half* out, int rows, int dim, float eps, int bits, cudaStream_t stream);
cudaError_t trirun_op_relu2_mul_rmsnorm(const __half* gate, const __half* up, const void* weight, int weight_f32,
                                        __half* out, int rows, int dim, float eps, int bits, cudaStream_t stream);

// out[i] = a[i] + b[i], n elements. out may alias a or b.
cudaError_t trirun_op_add(const __half* a, const __half* b, __half* out, int64_t n, cudaStream_t stream);

// Causal grouped-query attention with fp32 scores and softmax, scale
// 1/sqrt(head_dim). q (nq, hq, d): query row i sits at position start + i and
// attends to keys 0..start+i of k, v (>= start + nq rows, hkv, d). Query head
// h uses kv head h / (hq / hkv). out (nq, hq, d). Prefill: start 0, k/v hold
// the same tokens as q. Decode: k/v are the cache, start the new token's
// position. head_dim <= TRIRUN_OPS_MAX_HEAD_DIM; hq % hkv == 0.
cudaError_t trirun_op_attention(const __half* q, const __half* k, const __half* v, __half* out, int nq, int start,
                                int hq, int hkv, int head_dim, cudaStream_t stream);

// Copies rows (n, hkv, d) of new keys or values into cache rows start..start+n-1.
cudaError_t trirun_op_cache_append(const __half* src, __half* cache, int n, int start, int hkv, int head_dim,
                                   cudaStream_t stream);

// Batched decoding, one new token per sequence: q, out (batch, hq, d); caches
// (batch, max_t, hkv, d); sequence b's query is at position positions[b]
// (device memory, so that a captured graph can replay with new positions) and
// attends to its cache rows 0..positions[b]. A position outside 0..max_t-1
// gives NaN outputs for that sequence.
cudaError_t trirun_op_attention_decode_batch(const __half* q, const __half* k_cache, const __half* v_cache,
                                             const int32_t* positions, __half* out, int batch, int max_t, int hq,
                                             int hkv, int head_dim, cudaStream_t stream);

// The decoding step of trirun_op_rope (on q and on k_new, style and theta
// as there), trirun_op_cache_append_kv_batch and
// trirun_op_attention_decode_batch in one launch, with the same results bit
// for bit: q (batch, hq, d) and k_new (batch, hkv, d) are taken unrotated and
// rotated at position positions[b]; the rotated key and v_new (batch, hkv, d)
// go to row positions[b] of sequence b's caches (batch, max_t, hkv, d), and
// out (batch, hq, d) is the attention over rows 0..positions[b]. q, k_new and
// v_new are read, not written. A position outside 0..max_t-1 writes nothing
// and gives NaN outputs for that sequence. head_dim even, <=
// TRIRUN_OPS_MAX_HEAD_DIM; hq % hkv == 0.
cudaError_t trirun_op_attention_decode_batch_rope(const __half* q, const __half* k_new, const __half* v_new,
                                                  __half* k_cache, __half* v_cache, const int32_t* positions,
                                                  __half* out, int batch, int max_t, int hq, int hkv, int head_dim,
                                                  float theta, int style, cudaStream_t stream);

// Copies src row b (batch, hkv, d) into row positions[b] of sequence b's cache
// (batch, max_t, hkv, d); a position outside the cache writes nothing.
cudaError_t trirun_op_cache_append_batch(const __half* src, __half* cache, const int32_t* positions, int batch,
                                         int max_t, int hkv, int head_dim, cudaStream_t stream);

// The same for keys and values in one launch (the two appends of a decoding step).
cudaError_t trirun_op_cache_append_kv_batch(const __half* k_src, __half* k_cache, const __half* v_src,
                                            __half* v_cache, const int32_t* positions, int batch, int max_t, int hkv,
                                            int head_dim, cudaStream_t stream);

// out (rows, vocab) fp32 = log_softmax(logits) per row; logits fp16
// (logits_f32 == 0) or fp32.
cudaError_t trirun_op_log_softmax(const void* logits, int logits_f32, float* out, int rows, int vocab,
                                  cudaStream_t stream);

// out[r] fp32 = logsumexp(logits[r]) - logits[r][targets[r]] (the negative
// log-likelihood of the target). A target outside 0..vocab-1 gives NaN.
cudaError_t trirun_op_nll(const void* logits, int logits_f32, const int32_t* targets, float* out, int rows,
                          int vocab, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

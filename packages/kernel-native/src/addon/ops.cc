// Node-API bindings of the model operations (src/kernel/ops.h). The
// TypeScript layer validates dtypes and shapes and names the arguments first;
// here every operand is checked again against its real allocation (bounds,
// alignment, device) so that no call can read or write outside its buffer,
// and every launch status becomes a CudaError.
#include <string>
#include <vector>

#include "objects.h"
#include "ops.h"

namespace trirun {

namespace {

struct Operand {
  DeviceBuffer* buffer;
  void* ptr;
  const char* name;
};

// A (buffer, byte offset) argument pair at `index`, `bytes` long, aligned to `align`.
Operand ArgOperand(const Napi::CallbackInfo& info, size_t index, const char* name, uint64_t bytes, size_t align) {
  Napi::Env env = info.Env();
  DeviceBuffer* buffer = ArgBuffer(info, index, name);
  int64_t offset = ArgInt(info, index + 1, name);
  if (offset < 0) ThrowRangeError(env, std::string(name) + ": negative byte offset");
  CheckRange(env, buffer, static_cast<uint64_t>(offset), bytes, name);
  void* ptr = static_cast<char*>(buffer->ptr()) + offset;
  if (reinterpret_cast<uintptr_t>(ptr) % align != 0) {
    ThrowRangeError(env, std::string(name) + ": the data must be " + std::to_string(align) +
                             "-byte aligned (byte offset " + std::to_string(offset) + ")");
  }
  return Operand{buffer, ptr, name};
}

// A dimension argument in 1..max.
int64_t ArgDim(const Napi::CallbackInfo& info, size_t index, const char* name, int64_t max = 2147483647) {
  int64_t value = ArgInt(info, index, name);
  if (value < 1 || value > max) {
    ThrowRangeError(info.Env(),
                    std::string(name) + ": expected 1.." + std::to_string(max) + ", got " + std::to_string(value));
  }
  return value;
}

// All operands on one device; makes it current and returns it.
int CommonDevice(Napi::Env env, const std::vector<Operand>& operands) {
  int device = operands[0].buffer->device();
  for (const Operand& o : operands) {
    if (o.buffer->device() != device) {
      ThrowRangeError(env, std::string(o.name) + ": on device " + std::to_string(o.buffer->device()) + ", " +
                               operands[0].name + " on device " + std::to_string(device));
    }
  }
  UseDevice(env, device);
  return device;
}

// The stream argument (null/undefined: the legacy default stream).
cudaStream_t OpStream(const Napi::CallbackInfo& info, size_t index, int device) {
  StreamObject* object = nullptr;
  return ArgStream(info, index, device, &object);
}

// embedding(ids, off, table, off, out, off, n, vocab, dim, stream)
Napi::Value Embedding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t n = ArgDim(info, 6, "n"), vocab = ArgDim(info, 7, "vocab"), dim = ArgDim(info, 8, "dim");
  Operand ids = ArgOperand(info, 0, "ids", ByteSize(env, "ids", {n}, 4), 4);
  Operand table = ArgOperand(info, 2, "table", ByteSize(env, "table", {vocab, dim}, 2), 2);
  Operand out = ArgOperand(info, 4, "out", ByteSize(env, "out", {n, dim}, 2), 2);
  int device = CommonDevice(env, {ids, table, out});
  cudaStream_t stream = OpStream(info, 9, device);
  CheckCuda(env,
            trirun_op_embedding(static_cast<const int32_t*>(ids.ptr), static_cast<const __half*>(table.ptr),
                                static_cast<__half*>(out.ptr), int(n), int(vocab), int(dim), stream),
            "embedding");
  return env.Undefined();
}

// The quantization bits of a fused row op at `index`: 0 (none) or 2..8.
int ArgQuantizeBits(const Napi::CallbackInfo& info, size_t index) {
  int64_t bits = ArgInt(info, index, "quantizeBits");
  if (bits != 0 && (bits < 2 || bits > 8)) {
    ThrowRangeError(info.Env(), "quantizeBits: expected 2..8 (or 0: none), got " + std::to_string(bits));
  }
  return int(bits);
}

// The arguments of the norm bindings: (x, off[, second, off], weight, off, weightF32, out, off, rows, dim, eps,
// stream, quantizeBits), the second input (delta, up) where `second` names one.
struct NormCall {
  Operand x, second, weight, out;
  int rows, dim, weight_f32, bits;
  float eps;
  cudaStream_t stream;
};

NormCall ArgNorm(const Napi::CallbackInfo& info, const char* first, const char* second = nullptr) {
  Napi::Env env = info.Env();
  const size_t k = second ? 2 : 0;  // the arguments after the inputs sit this much further on
  bool weightF32 = ArgBool(info, 4 + k, "weightF32");
  int64_t rows = ArgDim(info, 7 + k, "rows"), dim = ArgDim(info, 8 + k, "dim");
  double eps = ArgNumber(info, 9 + k, "eps");
  if (!(eps >= 0) || eps > 1) ThrowRangeError(env, "eps: expected 0..1");
  int bits = ArgQuantizeBits(info, 11 + k);
  const uint64_t bytes = ByteSize(env, first, {rows, dim}, 2);
  NormCall c{};
  c.x = ArgOperand(info, 0, first, bytes, 2);
  if (second) c.second = ArgOperand(info, 2, second, bytes, 2);
  c.weight = ArgOperand(info, 2 + k, "weight", ByteSize(env, "weight", {dim}, (weightF32 ? 4 : 2)), weightF32 ? 4 : 2);
  c.out = ArgOperand(info, 5 + k, "out", bytes, 2);
  int device = second ? CommonDevice(env, {c.x, c.second, c.weight, c.out}) : CommonDevice(env, {c.x, c.weight, c.out});
  c.stream = OpStream(info, 10 + k, device);
  c.rows = int(rows);
  c.dim = int(dim);
  c.weight_f32 = weightF32 ? 1 : 0;
  c.bits = bits;
  c.eps = float(eps);
  return c;
}

Napi::Value RmsNorm(const Napi::CallbackInfo& info) {
  NormCall c = ArgNorm(info, "x");
  const __half* x = static_cast<const __half*>(c.x.ptr);
  __half* out = static_cast<__half*>(c.out.ptr);
  CheckCuda(info.Env(),
            c.bits == 0 ? trirun_op_rmsnorm(x, c.weight.ptr, c.weight_f32, out, c.rows, c.dim, c.eps, c.stream)
                        : trirun_op_rmsnorm_quantize(x, c.weight.ptr, c.weight_f32, out, c.rows, c.dim, c.eps, c.bits,
                                                     c.stream),
            "rmsnorm");
  return info.Env().Undefined();
}

Napi::Value AddRmsNorm(const Napi::CallbackInfo& info) {
  NormCall c = ArgNorm(info, "x", "delta");
  __half* x = static_cast<__half*>(c.x.ptr);
  const __half* delta = static_cast<const __half*>(c.second.ptr);
  __half* out = static_cast<__half*>(c.out.ptr);
  CheckCuda(info.Env(),
            c.bits == 0 ? trirun_op_add_rmsnorm(x, delta, c.weight.ptr, c.weight_f32, out, c.rows, c.dim, c.eps,
                                                c.stream)
                        : trirun_op_add_rmsnorm_quantize(x, delta, c.weight.ptr, c.weight_f32, out, c.rows, c.dim,
                                                         c.eps, c.bits, c.stream),
            "addRmsNorm");
  return info.Env().Undefined();
}

Napi::Value Relu2MulRmsNorm(const Napi::CallbackInfo& info) {
  NormCall c = ArgNorm(info, "gate", "up");
  CheckCuda(info.Env(),
            trirun_op_relu2_mul_rmsnorm(static_cast<const __half*>(c.x.ptr), static_cast<const __half*>(c.second.ptr),
                                        c.weight.ptr, c.weight_f32, static_cast<__half*>(c.out.ptr), c.rows, c.dim,
                                        c.eps, c.bits, c.stream),
            "relu2MulRmsNorm");
  return info.Env().Undefined();
}

// rope(x, off, positions, off, tokens, heads, headDim, theta, style, stream)
Napi::Value Rope(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t tokens = ArgDim(info, 4, "tokens"), heads = ArgDim(info, 5, "heads");
  int64_t headDim = ArgDim(info, 6, "headDim");
  double theta = ArgNumber(info, 7, "theta");
  int64_t style = ArgInt(info, 8, "style");
  if (headDim % 2 != 0) ThrowRangeError(env, "headDim: expected an even number, got " + std::to_string(headDim));
  if (!(theta > 1) || theta > 1e30) ThrowRangeError(env, "theta: expected a finite number above 1");
  if (style != 0 && style != 1) ThrowRangeError(env, "style: expected 0 (interleaved) or 1 (half)");
  Operand x = ArgOperand(info, 0, "x", ByteSize(env, "x", {tokens, heads, headDim}, 2), 2);
  Operand positions = ArgOperand(info, 2, "positions", ByteSize(env, "positions", {tokens}, 4), 4);
  int device = CommonDevice(env, {x, positions});
  cudaStream_t stream = OpStream(info, 9, device);
  CheckCuda(env,
            trirun_op_rope(static_cast<__half*>(x.ptr), static_cast<const int32_t*>(positions.ptr), int(tokens),
                           int(heads), int(headDim), float(theta), int(style), stream),
            "rope");
  return env.Undefined();
}

// siluMul / relu2Mul / add (a, off, b, off, out, off, n, stream): elementwise fp16.
template <cudaError_t (*Launch)(const __half*, const __half*, __half*, int64_t, cudaStream_t)>
Napi::Value Elementwise(const Napi::CallbackInfo& info, const char* what, const char* aName, const char* bName) {
  Napi::Env env = info.Env();
  int64_t n = ArgDim(info, 6, "n", int64_t(1) << 50);
  Operand a = ArgOperand(info, 0, aName, ByteSize(env, aName, {n}, 2), 2);
  Operand b = ArgOperand(info, 2, bName, ByteSize(env, bName, {n}, 2), 2);
  Operand out = ArgOperand(info, 4, "out", ByteSize(env, "out", {n}, 2), 2);
  int device = CommonDevice(env, {a, b, out});
  cudaStream_t stream = OpStream(info, 7, device);
  CheckCuda(env,
            Launch(static_cast<const __half*>(a.ptr), static_cast<const __half*>(b.ptr),
                   static_cast<__half*>(out.ptr), n, stream),
            what);
  return env.Undefined();
}

Napi::Value SiluMul(const Napi::CallbackInfo& info) {
  return Elementwise<trirun_op_silu_mul>(info, "siluMul", "gate", "up");
}

// quantizeRows(x, off, out, off, rows, dim, bits, stream)
Napi::Value QuantizeRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t rows = ArgDim(info, 4, "rows"), dim = ArgDim(info, 5, "dim");
  int64_t bits = ArgDim(info, 6, "bits", 8);
  if (bits < 2) ThrowRangeError(env, "bits: expected 2..8");
  Operand x = ArgOperand(info, 0, "x", ByteSize(env, "x", {rows, dim}, 2), 2);
  Operand out = ArgOperand(info, 2, "out", ByteSize(env, "out", {rows, dim}, 2), 2);
  int device = CommonDevice(env, {x, out});
  cudaStream_t stream = OpStream(info, 7, device);
  CheckCuda(env,
            trirun_op_quantize_rows(static_cast<const __half*>(x.ptr), static_cast<__half*>(out.ptr), int(rows),
                                    int(dim), int(bits), stream),
            "quantizeRows");
  return env.Undefined();
}

Napi::Value Relu2Mul(const Napi::CallbackInfo& info) {
  return Elementwise<trirun_op_relu2_mul>(info, "relu2Mul", "gate", "up");
}

Napi::Value Add(const Napi::CallbackInfo& info) { return Elementwise<trirun_op_add>(info, "add", "a", "b"); }

// attention(q, off, k, off, v, off, out, off, nq, start, kvRows, heads, kvHeads, headDim, stream)
Napi::Value Attention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t nq = ArgDim(info, 8, "nq");
  int64_t start = ArgInt(info, 9, "start");
  int64_t kvRows = ArgDim(info, 10, "kvRows");
  int64_t hq = ArgDim(info, 11, "heads"), hkv = ArgDim(info, 12, "kvHeads");
  int64_t d = ArgDim(info, 13, "headDim", TRIRUN_OPS_MAX_HEAD_DIM);
  if (start < 0 || start + nq > kvRows) {
    ThrowRangeError(env, "start: query rows " + std::to_string(start) + ".." + std::to_string(start + nq - 1) +
                             " need keys beyond the " + std::to_string(kvRows) + " rows of k and v");
  }
  if (hq % hkv != 0) ThrowRangeError(env, "kvHeads: must divide heads");
  if (nq * hq > 2147483647) ThrowRangeError(env, "nq * heads: must be below 2^31");
  Operand q = ArgOperand(info, 0, "q", ByteSize(env, "q", {nq, hq, d}, 2), 2);
  Operand k = ArgOperand(info, 2, "k", ByteSize(env, "k", {kvRows, hkv, d}, 2), 2);
  Operand v = ArgOperand(info, 4, "v", ByteSize(env, "v", {kvRows, hkv, d}, 2), 2);
  Operand out = ArgOperand(info, 6, "out", ByteSize(env, "out", {nq, hq, d}, 2), 2);
  int device = CommonDevice(env, {q, k, v, out});
  cudaStream_t stream = OpStream(info, 14, device);
  CheckCuda(env,
            trirun_op_attention(static_cast<const __half*>(q.ptr), static_cast<const __half*>(k.ptr),
                                static_cast<const __half*>(v.ptr), static_cast<__half*>(out.ptr), int(nq), int(start),
                                int(hq), int(hkv), int(d), stream),
            "attention");
  return env.Undefined();
}

// cacheAppend(src, off, cache, off, n, start, cacheRows, kvHeads, headDim, stream)
Napi::Value CacheAppend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t n = ArgDim(info, 4, "n");
  int64_t start = ArgInt(info, 5, "start");
  int64_t rows = ArgDim(info, 6, "cacheRows");
  int64_t hkv = ArgDim(info, 7, "kvHeads"), d = ArgDim(info, 8, "headDim");
  if (start < 0 || start + n > rows) {
    ThrowRangeError(env, "start: rows " + std::to_string(start) + ".." + std::to_string(start + n - 1) +
                             " lie outside the cache of " + std::to_string(rows) + " rows");
  }
  Operand src = ArgOperand(info, 0, "src", ByteSize(env, "src", {n, hkv, d}, 2), 2);
  Operand cache = ArgOperand(info, 2, "cache", ByteSize(env, "cache", {rows, hkv, d}, 2), 2);
  int device = CommonDevice(env, {src, cache});
  cudaStream_t stream = OpStream(info, 9, device);
  CheckCuda(env,
            trirun_op_cache_append(static_cast<const __half*>(src.ptr), static_cast<__half*>(cache.ptr), int(n),
                                   int(start), int(hkv), int(d), stream),
            "cacheAppend");
  return env.Undefined();
}

// attentionDecodeBatch(q, off, kCache, off, vCache, off, positions, off, out, off,
//                      batch, maxT, heads, kvHeads, headDim, stream)
Napi::Value AttentionDecodeBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t batch = ArgDim(info, 10, "batch"), maxT = ArgDim(info, 11, "maxT");
  int64_t hq = ArgDim(info, 12, "heads"), hkv = ArgDim(info, 13, "kvHeads");
  int64_t d = ArgDim(info, 14, "headDim", TRIRUN_OPS_MAX_HEAD_DIM);
  if (hq % hkv != 0) ThrowRangeError(env, "kvHeads: must divide heads");
  if (batch * hq > 2147483647) ThrowRangeError(env, "batch * heads: must be below 2^31");
  Operand q = ArgOperand(info, 0, "q", ByteSize(env, "q", {batch, hq, d}, 2), 2);
  Operand k = ArgOperand(info, 2, "kCache", ByteSize(env, "kCache", {batch, maxT, hkv, d}, 2), 2);
  Operand v = ArgOperand(info, 4, "vCache", ByteSize(env, "vCache", {batch, maxT, hkv, d}, 2), 2);
  Operand positions = ArgOperand(info, 6, "positions", ByteSize(env, "positions", {batch}, 4), 4);
  Operand out = ArgOperand(info, 8, "out", ByteSize(env, "out", {batch, hq, d}, 2), 2);
  int device = CommonDevice(env, {q, k, v, positions, out});
  cudaStream_t stream = OpStream(info, 15, device);
  CheckCuda(env,
            trirun_op_attention_decode_batch(static_cast<const __half*>(q.ptr), static_cast<const __half*>(k.ptr),
                                             static_cast<const __half*>(v.ptr),
                                             static_cast<const int32_t*>(positions.ptr), static_cast<__half*>(out.ptr),
                                             int(batch), int(maxT), int(hq), int(hkv), int(d), stream),
            "attentionDecodeBatch");
  return env.Undefined();
}

// attentionDecodeBatchRope(q, off, kNew, off, vNew, off, kCache, off, vCache, off, positions, off, out, off,
//                          batch, maxT, heads, kvHeads, headDim, theta, style, stream): RoPE on q and kNew,
// the cache appends and attention of a decoding step in one launch (q, kNew, vNew are only read).
Napi::Value AttentionDecodeBatchRope(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t batch = ArgDim(info, 14, "batch"), maxT = ArgDim(info, 15, "maxT");
  int64_t hq = ArgDim(info, 16, "heads"), hkv = ArgDim(info, 17, "kvHeads");
  int64_t d = ArgDim(info, 18, "headDim", TRIRUN_OPS_MAX_HEAD_DIM);
  double theta = ArgNumber(info, 19, "theta");
  int64_t style = ArgInt(info, 20, "style");
  if (hq % hkv != 0) ThrowRangeError(env, "kvHeads: must divide heads");
  if (batch * hq > 2147483647) ThrowRangeError(env, "batch * heads: must be below 2^31");
  if (d % 2 != 0) ThrowRangeError(env, "headDim: expected an even number, got " + std::to_string(d));
  // The range of opsRope, so that the fused op accepts what rope + attention accept.
  if (!(theta > 1) || theta > 1e30) ThrowRangeError(env, "theta: expected a finite number above 1");
  if (style != 0 && style != 1) ThrowRangeError(env, "style: expected 0 (interleaved) or 1 (half)");
  Operand q = ArgOperand(info, 0, "q", ByteSize(env, "q", {batch, hq, d}, 2), 2);
  Operand kn = ArgOperand(info, 2, "kNew", ByteSize(env, "kNew", {batch, hkv, d}, 2), 2);
  Operand vn = ArgOperand(info, 4, "vNew", ByteSize(env, "vNew", {batch, hkv, d}, 2), 2);
  Operand kc = ArgOperand(info, 6, "kCache", ByteSize(env, "kCache", {batch, maxT, hkv, d}, 2), 2);
  Operand vc = ArgOperand(info, 8, "vCache", ByteSize(env, "vCache", {batch, maxT, hkv, d}, 2), 2);
  Operand positions = ArgOperand(info, 10, "positions", ByteSize(env, "positions", {batch}, 4), 4);
  Operand out = ArgOperand(info, 12, "out", ByteSize(env, "out", {batch, hq, d}, 2), 2);
  int device = CommonDevice(env, {q, kn, vn, kc, vc, positions, out});
  cudaStream_t stream = OpStream(info, 21, device);
  CheckCuda(env,
            trirun_op_attention_decode_batch_rope(
                static_cast<const __half*>(q.ptr), static_cast<const __half*>(kn.ptr),
                static_cast<const __half*>(vn.ptr), static_cast<__half*>(kc.ptr), static_cast<__half*>(vc.ptr),
                static_cast<const int32_t*>(positions.ptr), static_cast<__half*>(out.ptr), int(batch), int(maxT),
                int(hq), int(hkv), int(d), float(theta), int(style), stream),
            "attentionDecodeBatchRope");
  return env.Undefined();
}

// cacheAppendBatch(src, off, cache, off, positions, off, batch, maxT, kvHeads, headDim, stream)
Napi::Value CacheAppendBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t batch = ArgDim(info, 6, "batch"), maxT = ArgDim(info, 7, "maxT");
  int64_t hkv = ArgDim(info, 8, "kvHeads"), d = ArgDim(info, 9, "headDim");
  Operand src = ArgOperand(info, 0, "src", ByteSize(env, "src", {batch, hkv, d}, 2), 2);
  Operand cache = ArgOperand(info, 2, "cache", ByteSize(env, "cache", {batch, maxT, hkv, d}, 2), 2);
  Operand positions = ArgOperand(info, 4, "positions", ByteSize(env, "positions", {batch}, 4), 4);
  int device = CommonDevice(env, {src, cache, positions});
  cudaStream_t stream = OpStream(info, 10, device);
  CheckCuda(env,
            trirun_op_cache_append_batch(static_cast<const __half*>(src.ptr), static_cast<__half*>(cache.ptr),
                                         static_cast<const int32_t*>(positions.ptr), int(batch), int(maxT), int(hkv),
                                         int(d), stream),
            "cacheAppendBatch");
  return env.Undefined();
}

// cacheAppendKvBatch(kSrc, off, kCache, off, vSrc, off, vCache, off, positions, off, batch, maxT, kvHeads,
// headDim, stream): both appends of a decoding step in one launch.
Napi::Value CacheAppendKvBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t batch = ArgDim(info, 10, "batch"), maxT = ArgDim(info, 11, "maxT");
  int64_t hkv = ArgDim(info, 12, "kvHeads"), d = ArgDim(info, 13, "headDim");
  Operand ks = ArgOperand(info, 0, "kNew", ByteSize(env, "kNew", {batch, hkv, d}, 2), 2);
  Operand kc = ArgOperand(info, 2, "kCache", ByteSize(env, "kCache", {batch, maxT, hkv, d}, 2), 2);
  Operand vs = ArgOperand(info, 4, "vNew", ByteSize(env, "vNew", {batch, hkv, d}, 2), 2);
  Operand vc = ArgOperand(info, 6, "vCache", ByteSize(env, "vCache", {batch, maxT, hkv, d}, 2), 2);
  Operand positions = ArgOperand(info, 8, "positions", ByteSize(env, "positions", {batch}, 4), 4);
  int device = CommonDevice(env, {ks, kc, vs, vc, positions});
  cudaStream_t stream = OpStream(info, 14, device);
  CheckCuda(env,
            trirun_op_cache_append_kv_batch(static_cast<const __half*>(ks.ptr), static_cast<__half*>(kc.ptr),
                                            static_cast<const __half*>(vs.ptr), static_cast<__half*>(vc.ptr),
                                            static_cast<const int32_t*>(positions.ptr), int(batch), int(maxT),
                                            int(hkv), int(d), stream),
            "cacheAppendKvBatch");
  return env.Undefined();
}

// logSoftmax(logits, off, logitsF32, out, off, rows, vocab, stream)
Napi::Value LogSoftmax(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool f32 = ArgBool(info, 2, "logitsF32");
  int64_t rows = ArgDim(info, 5, "rows"), vocab = ArgDim(info, 6, "vocab");
  Operand logits = ArgOperand(info, 0, "logits", ByteSize(env, "logits", {rows, vocab}, (f32 ? 4 : 2)), f32 ? 4 : 2);
  Operand out = ArgOperand(info, 3, "out", ByteSize(env, "out", {rows, vocab}, 4), 4);
  int device = CommonDevice(env, {logits, out});
  cudaStream_t stream = OpStream(info, 7, device);
  CheckCuda(env,
            trirun_op_log_softmax(logits.ptr, f32 ? 1 : 0, static_cast<float*>(out.ptr), int(rows), int(vocab),
                                  stream),
            "logSoftmax");
  return env.Undefined();
}

// nll(logits, off, logitsF32, targets, off, out, off, rows, vocab, stream)
Napi::Value Nll(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool f32 = ArgBool(info, 2, "logitsF32");
  int64_t rows = ArgDim(info, 7, "rows"), vocab = ArgDim(info, 8, "vocab");
  Operand logits = ArgOperand(info, 0, "logits", ByteSize(env, "logits", {rows, vocab}, (f32 ? 4 : 2)), f32 ? 4 : 2);
  Operand targets = ArgOperand(info, 3, "targets", ByteSize(env, "targets", {rows}, 4), 4);
  Operand out = ArgOperand(info, 5, "out", ByteSize(env, "out", {rows}, 4), 4);
  int device = CommonDevice(env, {logits, targets, out});
  cudaStream_t stream = OpStream(info, 9, device);
  CheckCuda(env,
            trirun_op_nll(logits.ptr, f32 ? 1 : 0, static_cast<const int32_t*>(targets.ptr),
                          static_cast<float*>(out.ptr), int(rows), int(vocab), stream),
            "nll");
  return env.Undefined();
}

}  // namespace

void RegisterOpsFunctions(Napi::Env env, Napi::Object exports) {
  exports.Set("opsEmbedding", Napi::Function::New(env, Embedding, "opsEmbedding"));
  exports.Set("opsRmsNorm", Napi::Function::New(env, RmsNorm, "opsRmsNorm"));
  exports.Set("opsCacheAppendKvBatch", Napi::Function::New(env, CacheAppendKvBatch, "opsCacheAppendKvBatch"));
  exports.Set("opsAddRmsNorm", Napi::Function::New(env, AddRmsNorm, "opsAddRmsNorm"));
  exports.Set("opsRope", Napi::Function::New(env, Rope, "opsRope"));
  exports.Set("opsSiluMul", Napi::Function::New(env, SiluMul, "opsSiluMul"));
  exports.Set("opsRelu2Mul", Napi::Function::New(env, Relu2Mul, "opsRelu2Mul"));
  exports.Set("opsRelu2MulRmsNorm", Napi::Function::New(env, Relu2MulRmsNorm, "opsRelu2MulRmsNorm"));
  exports.Set("opsQuantizeRows", Napi::Function::New(env, QuantizeRows, "opsQuantizeRows"));
  exports.Set("opsAdd", Napi::Function::New(env, Add, "opsAdd"));
  exports.Set("opsAttention", Napi::Function::New(env, Attention, "opsAttention"));
  exports.Set("opsCacheAppend", Napi::Function::New(env, CacheAppend, "opsCacheAppend"));
  exports.Set("opsAttentionDecodeBatch", Napi::Function::New(env, AttentionDecodeBatch, "opsAttentionDecodeBatch"));
  exports.Set("opsAttentionDecodeBatchRope",
              Napi::Function::New(env, AttentionDecodeBatchRope, "opsAttentionDecodeBatchRope"));
  exports.Set("opsCacheAppendBatch", Napi::Function::New(env, CacheAppendBatch, "opsCacheAppendBatch"));
  exports.Set("opsLogSoftmax", Napi::Function::New(env, LogSoftmax, "opsLogSoftmax"));
  exports.Set("opsNll", Napi::Function::New(env, Nll, "opsNll"));
}

}  // namespace trirun

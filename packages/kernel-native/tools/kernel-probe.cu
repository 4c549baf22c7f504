// kernel-probe: a standalone C++/CUDA driver for developing trirun.cu on a GPU
// machine without Node.js: correctness against cuBLAS (fp16 inputs, fp32
// output) on random data, and cold-weight timings against cuBLAS FP16.
// Build there:  nvcc -O3 -std=c++17 -arch=sm_90a -DTRIRUN_HAVE_SM90A -I../src/kernel kernel-probe.cu ../src/kernel/trirun.cu -lcublas
// Usage: kernel-probe check|speed [--quick] | speedm|launch m1,m2,... | sanitize | tiles | one k n m g
// The supported check is the Node bundle (DEVICE.md); this is the kernel
// engineer's inner loop.
#include <cublas_v2.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "cuda-check.h"
#include "trirun.h"

// trirun.cu's workspace layout (a probe may look inside): the fp32 slots of
// shared columns first, then the column locks and the small-batch partials.
namespace trirun {
size_t slot_bytes(int n);
}

#define CB(x)                                                        \
  do {                                                               \
    cublasStatus_t s_ = (x);                                         \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                               \
      fprintf(stderr, "%s:%d cublas status %d\n", __FILE__, __LINE__, (int)s_); \
      exit(1);                                                       \
    }                                                                \
  } while (0)

// The reference layout's permutations (trirun-format.md), written from the text.
static std::vector<int> weight_perm() {
  std::vector<int> p;
  for (int i = 0; i < 32; ++i) {
    std::vector<int> base;
    int col = i / 4, r0 = 2 * (i % 4);
    for (int block = 0; block < 2; ++block)
      for (int row : {r0, r0 + 1, r0 + 8, r0 + 9}) base.push_back(16 * row + col + 8 * block);
    for (int j = 0; j < 4; ++j)
      for (int b : base) p.push_back(b + 256 * j);
  }
  std::vector<int> p2(1024), p3(1024);
  const int i8[8] = {0, 2, 4, 6, 1, 3, 5, 7};
  for (int g = 0; g < 128; ++g)
    for (int t = 0; t < 8; ++t) p2[8 * g + t] = p[8 * g + i8[t]];
  const int i16[16] = {0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15};
  for (int g = 0; g < 64; ++g)
    for (int t = 0; t < 16; ++t) p3[16 * g + t] = p2[16 * g + i16[t]];
  return p3;
}

static void pack_weights(const std::vector<uint8_t>& q, int k, int n, std::vector<uint32_t>& out) {
  static const std::vector<int> P = weight_perm();
  out.assign(static_cast<size_t>(k / 16) * n, 0);
  std::vector<uint8_t> stream(16 * static_cast<size_t>(n));
  for (int tr = 0; tr < k / 16; ++tr) {
    for (int tc = 0; tc < n / 16; ++tc)
      for (int i = 0; i < 16; ++i)
        for (int j = 0; j < 16; ++j) stream[tc * 256 + 16 * i + j] = q[static_cast<size_t>(16 * tr + i) * n + 16 * tc + j];
    for (int c = 0; c < n / 64; ++c)
      for (int t = 0; t < 1024; ++t) {
        uint32_t code = stream[c * 1024 + P[t]];
        out[static_cast<size_t>(tr) * n + c * 64 + t / 16] |= code << (2 * (t % 16));
      }
  }
}

static void pack_scales(const std::vector<__half>& s, int rows, int n, bool grouped, std::vector<__half>& out) {
  out.resize(s.size());
  if (grouped) {
    for (size_t base = 0; base < s.size(); base += 64)
      for (int i = 0; i < 8; ++i)
        for (int j = 0; j < 8; ++j) out[base + 8 * i + j] = s[base + i + 8 * j];
  } else {
    const int js[8] = {0, 1, 8, 9, 16, 17, 24, 25};
    for (size_t base = 0; base < s.size(); base += 32)
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 8; ++j) out[base + 8 * i + j] = s[base + 2 * i + js[j]];
  }
  (void)rows;
  (void)n;
}

struct Problem {
  int k, n, g;
  std::vector<uint8_t> q;
  std::vector<__half> s;  // natural
  uint32_t* dB = nullptr;
  __half* dS = nullptr;
  __half* dW = nullptr;  // dequantized (k, n) fp16
};

static void make_problem(Problem& p, std::mt19937& rng) {
  const int rows = p.g == -1 ? 1 : p.k / p.g;
  p.q.resize(static_cast<size_t>(p.k) * p.n);
  std::uniform_int_distribution<int> code(0, 3);
  for (auto& c : p.q) c = static_cast<uint8_t>(code(rng));
  // Scales of 0.005..0.02, and 0.0625..1 on a random quarter of the (group, 64-column) blocks: the Hopper
  // kernel's subnormal decode takes only tiles whose scales are all below 2^-4, so both decodes run.
  std::uniform_real_distribution<float> sc(0.005f, 0.02f), big(0.0625f, 1.0f);
  std::uniform_int_distribution<int> quarter(0, 3);
  p.s.resize(static_cast<size_t>(rows) * p.n);
  for (int r = 0; r < rows; ++r)
    for (int c0 = 0; c0 < p.n; c0 += 64) {
      const bool large = quarter(rng) == 0;
      for (int c = c0; c < std::min(c0 + 64, p.n); ++c)
        p.s[static_cast<size_t>(r) * p.n + c] = __float2half(large ? big(rng) : sc(rng));
    }
  std::vector<uint32_t> B;
  pack_weights(p.q, p.k, p.n, B);
  std::vector<__half> S;
  pack_scales(p.s, rows, p.n, p.g != -1 && p.g != p.k, S);
  std::vector<__half> W(static_cast<size_t>(p.k) * p.n);
  const int gs = p.g == -1 ? p.k : p.g;
  for (int r = 0; r < p.k; ++r)
    for (int c = 0; c < p.n; ++c)
      W[static_cast<size_t>(r) * p.n + c] =
          __float2half((static_cast<int>(p.q[static_cast<size_t>(r) * p.n + c]) - 1) *
                       __half2float(p.s[static_cast<size_t>(r / gs) * p.n + c]));
  CK(cudaMalloc(&p.dB, B.size() * 4));
  CK(cudaMalloc(&p.dS, S.size() * 2));
  CK(cudaMalloc(&p.dW, W.size() * 2));
  CK(cudaMemcpy(p.dB, B.data(), B.size() * 4, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(p.dS, S.data(), S.size() * 2, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(p.dW, W.data(), W.size() * 2, cudaMemcpyHostToDevice));
}
static void free_problem(Problem& p) {
  cudaFree(p.dB);
  cudaFree(p.dS);
  cudaFree(p.dW);
}

// Row-major C(m,n) = A(m,k) W(k,n) through column-major cuBLAS: C^T = W^T A^T.
static void gemm_ref(cublasHandle_t h, const __half* A, const __half* W, void* C, bool c_f32, int m, int n, int k,
                     cudaStream_t st) {
  const float one = 1.f, zero = 0.f;
  CB(cublasSetStream(h, st));
  CB(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &one, W, CUDA_R_16F, n, A, CUDA_R_16F, k, &zero, C,
                  c_f32 ? CUDA_R_32F : CUDA_R_16F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// The sanitize sweep's reference, in plain fp32: racecheck reports hazards inside some of the cuBLAS
// kernels that gemm_ref runs (nvjet_sm90_hss_*, run 91), and limiting the sanitizers to TriRun's
// kernels (--kernel-name) made racecheck fail on the unchecked ones (run 92).
__global__ void plain_gemm_f32(const __half* A, const __half* W, float* C, int m, int n, int k) {
  const int col = blockIdx.x * blockDim.x + threadIdx.x;
  const int row = blockIdx.y;
  if (col >= n || row >= m) return;
  float acc = 0.f;
  for (int i = 0; i < k; ++i) acc += __half2float(A[static_cast<size_t>(row) * k + i]) * __half2float(W[static_cast<size_t>(i) * n + col]);
  C[static_cast<size_t>(row) * n + col] = acc;
}

static int run_trirun(const __half* A, const uint32_t* B, const __half* S, __half* C, int m, int n, int k, int g,
                      int* ws, size_t wsb, TrirunConfig* cfg, cudaStream_t st) {
  cudaError_t ce;
  int rc = trirun_matmul(A, B, S, C, m, n, k, g, ws, wsb, 0, st, cfg, &ce);
  if (rc != TRIRUN_OK) {
    fprintf(stderr, "trirun_matmul: %s (%s)\n", trirun_error_string(rc), cudaGetErrorName(ce));
    exit(1);
  }
  return rc;
}

static void fill_half(std::vector<__half>& v, std::mt19937& rng, float lo = -1.f) {
  std::uniform_real_distribution<float> u(lo, 1.f);
  for (auto& x : v) x = __float2half(u(rng));
}

// Whether trirun_matmul takes config->variant = 2 (the Hopper kernel) here.
static bool hopper_available() {
  static int known = -1;
  if (known < 0) {
    void* ws;
    CK(cudaMalloc(&ws, trirun_workspace_bytes(256, 16)));
    CK(cudaMemset(ws, 0, trirun_workspace_bytes(256, 16)));
    void* buf;
    CK(cudaMalloc(&buf, 1 << 20));
    CK(cudaMemset(buf, 0, 1 << 20));
    TrirunConfig cfg{};
    cfg.variant = 2;
    cudaError_t ce;
    known = trirun_matmul(buf, buf, buf, static_cast<char*>(buf) + (512 << 10), 1, 256, 128, -1, ws,
                          trirun_workspace_bytes(256, 16), 0, 0, &cfg, &ce) == TRIRUN_OK;
    CK(cudaDeviceSynchronize());
    cudaFree(buf);
    cudaFree(ws);
    printf("Hopper kernel: %s\n", known ? "available" : "not available");
  }
  return known == 1;
}

static int check(bool quick, bool small) {
  std::mt19937 rng(std::random_device{}());
  cublasHandle_t h;
  CB(cublasCreate(&h));
  std::vector<int> ms = {1,  2,  3,  4,  7,   8,   15,  16,  17,  24,  31,  32,   33,  48,
                         63, 64, 65, 96, 128, 129, 144, 160, 176, 192, 200, 224, 256, 320, 400, 480, 511, 1024, 4096};
  struct KN {
    int k, n;
  };
  // 1024 x 8192: 64 column tiles, so Hopper calls of 129..160 rows split off their last rows (1..32 of
  // them go to the small-batch kernel). 2048 x 3072: 48 column-slices, the narrow layers' mid pairs (m = 320, 400).
  // With TRIRUN_SMALL_CLUSTERS, clusters of 2 (1024 x 8192), 4 (4096 x 4096, 2048 x 3072, 11008 x 4096) and 5
  // blocks (2560 x 2560; 6912 x 2560 with a partial last k tile) per column.
  std::vector<KN> shapes = {{128, 256},    {256, 512},    {512, 768},   {4096, 4096}, {8192, 1024}, {11008, 4096},
                            {28672, 1024}, {1024, 8192}, {2048, 3072}, {2560, 2560}, {6912, 2560}};
  if (!quick) shapes.push_back({8192, 8192});
  if (small) {
    // 2048 x 3072 at m = 64: a Hopper launch with slots on aligned runs (hopper_aligned_blocks: 96 blocks).
    shapes = {{128, 256}, {256, 512}, {512, 768}, {1024, 8192}, {2560, 2560}, {2048, 3072}};
    ms = {1, 16, 17, 64, 129, 160, 176, 200, 224, 320};
  }
  int* ws;
  const size_t wsb = 64 << 20;
  CK(cudaMalloc(&ws, wsb));
  CK(cudaMemset(ws, 0, wsb));
  int failures = 0, runs = 0, clustered = 0;
  size_t dirty = 0;
  int sm_count = 0;
  CK(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, 0));
  double worst = 0, worst_positive = 0;
  struct Cfg {
    int tk, tn, mp, variant;
  };
  std::vector<Cfg> cfgs = {{0, 0, 0, 0},   {128, 128, 0, 0}, {64, 256, 0, 0},  {0, 0, 1, 0},
                           {128, 512, 0, 0}, {256, 256, 0, 0}, {512, 128, 0, 0}};
  // The Hopper kernel at every m (and with one batch slice per launch), where it runs.
  if (hopper_available()) {
    cfgs.push_back({0, 0, 0, 2});
    cfgs.push_back({0, 0, 1, 2});
  }
  for (auto sh : shapes)
    for (int g : {128, -1}) {
      Problem p{sh.k, sh.n, g};
      make_problem(p, rng);
      for (int m : ms) {
        if (static_cast<double>(m) * sh.k * sh.n > 4e10 && m > 1024) continue;
        std::vector<__half> hA(static_cast<size_t>(m) * sh.k);
        // Odd m: all-positive activations (post-activation-like inputs), which
        // add up coherently; even m: zero-mean.
        const bool positive = m % 2 == 1;
        fill_half(hA, rng, positive ? 0.f : -1.f);
        __half *dA, *dC;
        float* dR;
        CK(cudaMalloc(&dA, hA.size() * 2));
        CK(cudaMalloc(&dC, static_cast<size_t>(m) * sh.n * 2));
        CK(cudaMalloc(&dR, static_cast<size_t>(m) * sh.n * 4));
        CK(cudaMemcpy(dA, hA.data(), hA.size() * 2, cudaMemcpyHostToDevice));
        if (small) {
          plain_gemm_f32<<<dim3((sh.n + 255) / 256, m), 256>>>(dA, p.dW, dR, m, sh.n, sh.k);
          CK(cudaGetLastError());
        } else {
          gemm_ref(h, dA, p.dW, dR, true, m, sh.n, sh.k, 0);
        }
        std::vector<float> ref(static_cast<size_t>(m) * sh.n);
        CK(cudaMemcpy(ref.data(), dR, ref.size() * 4, cudaMemcpyDeviceToHost));
        for (auto c : cfgs) {
          const bool small_tile = c.tk && !(c.tk == 128 && c.tn == 128) && !(c.tk == 64 && c.tn == 256);
          if (small_tile && (m > 32 || (m > 16 && c.tn == 512))) continue;  // small-batch tiles
          if (c.tk && ((!small_tile && sh.k % c.tk) || sh.n % c.tn)) continue;
          CK(cudaMemset(dC, 0x7e, static_cast<size_t>(m) * sh.n * 2));  // NaN poison (0x7e7e)
          // The slots hold stale sums between calls: poisoned with NaNs, any
          // read of a slot before this call wrote it shows in C.
          CK(cudaMemset(ws, 0x7f, trirun::slot_bytes(sh.n)));
          TrirunConfig cfg{};
          cfg.thread_k = c.tk;
          cfg.thread_n = c.tn;
          cfg.max_par = c.mp;
          cfg.variant = c.variant;
          run_trirun(dA, p.dB, p.dS, dC, m, sh.n, sh.k, g, ws, wsb, &cfg, 0);
          CK(cudaDeviceSynchronize());
          {  // the locks must be back to zero after every call
            std::vector<int> locks(static_cast<size_t>(sh.n / 128) * 16);
            CK(cudaMemcpy(locks.data(), reinterpret_cast<char*>(ws) + trirun::slot_bytes(sh.n), locks.size() * 4,
                          cudaMemcpyDeviceToHost));
            dirty += std::count_if(locks.begin(), locks.end(), [](int x) { return x != 0; });
          }
          std::vector<__half> out(static_cast<size_t>(m) * sh.n);
          CK(cudaMemcpy(out.data(), dC, out.size() * 2, cudaMemcpyDeviceToHost));
          double num = 0, den = 0;
          size_t nan = 0;
          for (size_t i = 0; i < out.size(); ++i) {
            float v = __half2float(out[i]);
            if (!std::isfinite(v)) {
              ++nan;
              continue;
            }
            num += (v - ref[i]) * (double)(v - ref[i]);
            den += ref[i] * (double)ref[i];
          }
          double rel = std::sqrt(num / den);
          ++runs;
          // A small-batch launch of fewer blocks than SMs: a clustered one (TRIRUN_SMALL_CLUSTERS), the only
          // kind that reports its own block count (the striped ones launch one block per SM).
          if (cfg.variant == 1 && cfg.sms < sm_count) ++clustered;
          worst = std::max(worst, rel);
          if (positive) worst_positive = std::max(worst_positive, rel);
          if (nan || !(rel <= 1e-3)) {
            ++failures;
            printf("FAIL m=%d k=%d n=%d g=%d tk=%d tn=%d mp=%d variant=%d rel=%.3g unwritten/nonfinite=%zu\n", m,
                   sh.k, sh.n, g, cfg.thread_k, cfg.thread_n, cfg.max_par, cfg.variant, rel, nan);
          }
        }
        cudaFree(dA);
        cudaFree(dC);
        cudaFree(dR);
      }
      free_problem(p);
    }
  {  // the whole workspace but the slots (locks and small-batch partials) must be zero again
    const size_t slots = trirun::slot_bytes(0);
    std::vector<int> all((wsb - slots) / 4);
    CK(cudaMemcpy(all.data(), reinterpret_cast<char*>(ws) + slots, wsb - slots, cudaMemcpyDeviceToHost));
    dirty += std::count_if(all.begin(), all.end(), [](int x) { return x != 0; });
  }
  printf("check: %d runs (%d clustered), %d failures, worst rel error %.3g (positive activations: %.3g), "
         "workspace left dirty: %zu\n",
         runs, clustered, failures, worst, worst_positive, dirty);
  cublasDestroy(h);
  return failures || dirty ? 1 : 0;
}

static float median(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// PROBE_HOT=1: weights read from L2 instead of cold (see ColdLayer); the modes that honour it say so
// in their header (hot_note()).
static bool probe_hot() {
  const char* v = std::getenv("PROBE_HOT");
  return v != nullptr && std::string(v) == "1";
}
static const char* hot_note() { return probe_hot() ? " -- PROBE_HOT=1: weights read from L2, not cold" : ""; }

// The speed tables' model sets: each model's layer shapes (k, n).
struct ModelSet {
  const char* name;
  std::vector<std::pair<int, int>> kn;
};
static const std::vector<ModelSet> kModelSets = {
    {"llama2-70b(ref)", {{8192, 24576}, {8192, 8192}, {8192, 43520}, {21760, 8192}}},
    {"llama2-7b", {{4096, 12288}, {4096, 4096}, {4096, 22016}, {11008, 4096}}},
    {"trilm-3072", {{3072, 9216}, {3072, 3072}, {3072, 18432}, {9216, 3072}}},
    // BitNet b1.58 2B4T: q/k/v fused, o, gate/up fused, down.
    {"bitnet-2b", {{2560, 3840}, {2560, 2560}, {2560, 13824}, {6912, 2560}}}};

// One layer shape's buffers for cold-weight timings: random packed weights
// (scales 0.01) and (unless !fp16) fp16 weights, each in enough copies that
// rotating through them reads more than 4x L2, plus A (up to mmax rows,
// random) and C.
struct ColdLayer {
  int k, n, qcopies, fcopies;
  size_t qbytes, fbytes;
  std::vector<void*> qB, qS, fW;
  __half *dA = nullptr, *dC = nullptr;
  ColdLayer(int k_, int n_, int mmax, size_t l2, std::mt19937& rng, bool fp16 = true) : k(k_), n(n_) {
    qbytes = static_cast<size_t>(k) * n / 4;
    fbytes = static_cast<size_t>(k) * n * 2;
    qcopies = static_cast<int>(std::max<size_t>(2, (4 * l2) / qbytes + 1));
    fcopies = fp16 ? static_cast<int>(std::max<size_t>(2, (4 * l2) / fbytes + 1)) : 0;
    // PROBE_HOT=1: one copy of the weights (TriRun's and FP16's alike), so that after the first call
    // they are read from L2 where they fit: the floor of what any early fetch of a layer's weights (an
    // L2 prefetch during the op before it) could give. Not the cold-weight numbers of the benchmarks;
    // the modes that honour it print "HOT" in their header.
    if (probe_hot()) {
      qcopies = 1;
      fcopies = std::min(fcopies, 1);
    }
    qB.resize(qcopies);
    qS.resize(qcopies);
    fW.resize(fcopies);
    std::vector<uint32_t> hb(qbytes / 4);
    for (auto& x : hb) x = rng();
    std::vector<__half> hs(static_cast<size_t>(k / 128) * n, __float2half(0.01f));
    for (int i = 0; i < qcopies; ++i) {
      CK(cudaMalloc(&qB[i], qbytes));
      CK(cudaMalloc(&qS[i], hs.size() * 2));
      CK(cudaMemcpy(qB[i], hb.data(), qbytes, cudaMemcpyHostToDevice));
      CK(cudaMemcpy(qS[i], hs.data(), hs.size() * 2, cudaMemcpyHostToDevice));
    }
    std::vector<__half> hw(fcopies > 0 ? static_cast<size_t>(k) * n : 0);
    fill_half(hw, rng);
    for (int i = 0; i < fcopies; ++i) {
      CK(cudaMalloc(&fW[i], fbytes));
      CK(cudaMemcpy(fW[i], hw.data(), fbytes, cudaMemcpyHostToDevice));
    }
    std::vector<__half> ha(static_cast<size_t>(mmax) * k);
    fill_half(ha, rng);
    CK(cudaMalloc(&dA, ha.size() * 2));
    CK(cudaMalloc(&dC, static_cast<size_t>(mmax) * n * 2));
    CK(cudaMemcpy(dA, ha.data(), ha.size() * 2, cudaMemcpyHostToDevice));
  }
  ColdLayer(const ColdLayer&) = delete;
  ColdLayer& operator=(const ColdLayer&) = delete;
  ~ColdLayer() {
    for (int i = 0; i < qcopies; ++i) {
      cudaFree(qB[i]);
      cudaFree(qS[i]);
    }
    for (int i = 0; i < fcopies; ++i) cudaFree(fW[i]);
    cudaFree(dA);
    cudaFree(dC);
  }
  const uint32_t* B(int i) const { return static_cast<const uint32_t*>(qB[i % qcopies]); }
  const __half* S(int i) const { return static_cast<const __half*>(qS[i % qcopies]); }
  const __half* W(int i) const { return static_cast<const __half*>(fW[i % fcopies]); }
};

static int speed(bool quick, const std::vector<int>& only_ms = {}) {
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  printf("device: %s, %d SMs, L2 %d MB%s\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20, hot_note());
  std::mt19937 rng(1234);
  cublasHandle_t h;
  CB(cublasCreate(&h));
  cudaStream_t st;
  CK(cudaStreamCreate(&st));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  // copy roofline
  {
    size_t bytes = 1ull << 30;
    void *a, *b;
    CK(cudaMalloc(&a, bytes));
    CK(cudaMalloc(&b, bytes));
    std::vector<float> t;
    for (int i = 0; i < 20; ++i) {
      CK(cudaEventRecord(e0, st));
      CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, st));
      CK(cudaEventRecord(e1, st));
      CK(cudaEventSynchronize(e1));
      float ms;
      CK(cudaEventElapsedTime(&ms, e0, e1));
      t.push_back(ms);
    }
    printf("d2d copy: %.0f GB/s (read+write)\n", 2.0 * bytes / median(t) / 1e6);
    cudaFree(a);
    cudaFree(b);
  }
  std::vector<int> ms = quick ? std::vector<int>{1, 16, 32, 64} : std::vector<int>{1, 2, 4, 8, 12, 16, 32, 64, 128, 256, 1024};
  if (!only_ms.empty()) ms = only_ms;
  int* ws;
  const size_t wsb = 64 << 20;
  CK(cudaMalloc(&ws, wsb));
  CK(cudaMemset(ws, 0, wsb));
  const size_t l2 = prop.l2CacheSize;
  for (auto& set : kModelSets) {
    std::vector<double> sum_t(ms.size()), sum_f(ms.size());
    for (auto [k, n] : set.kn) {
      const ColdLayer layer(k, n, *std::max_element(ms.begin(), ms.end()), l2, rng);
      for (size_t mi = 0; mi < ms.size(); ++mi) {
        int m = ms[mi];
        TrirunConfig cfg{};
        const int reps = 60;
        std::vector<float> tq, tf;
        for (int r = 0; r < reps + 5; ++r) {
          cfg = TrirunConfig{};
          CK(cudaEventRecord(e0, st));
          run_trirun(layer.dA, layer.B(r), layer.S(r), layer.dC, m, n, k, 128, ws, wsb, &cfg, st);
          CK(cudaEventRecord(e1, st));
          CK(cudaEventSynchronize(e1));
          float t;
          CK(cudaEventElapsedTime(&t, e0, e1));
          if (r >= 5) tq.push_back(t);
          CK(cudaEventRecord(e0, st));
          gemm_ref(h, layer.dA, layer.W(r), layer.dC, false, m, n, k, st);
          CK(cudaEventRecord(e1, st));
          CK(cudaEventSynchronize(e1));
          CK(cudaEventElapsedTime(&t, e0, e1));
          if (r >= 5) tf.push_back(t);
        }
        float mq = median(tq), mf = median(tf);
        sum_t[mi] += mq;
        sum_f[mi] += mf;
        printf("%-16s k=%5d n=%5d m=%4d  trirun %8.1f us (%6.0f GB/s w, %4.0f TF) fp16 %8.1f us (%4.0f TF)  x%.2f  "
               "[v%d tk=%d tn=%d mb=%d st=%d]\n",
               set.name, k, n, m, mq * 1e3, layer.qbytes / (mq * 1e-3) / 1e9, 2.0 * m * k * n / (mq * 1e-3) / 1e12,
               mf * 1e3, 2.0 * m * k * n / (mf * 1e-3) / 1e12, mf / mq, cfg.variant, cfg.thread_k, cfg.thread_n,
               cfg.m_blocks, cfg.stages);
      }
    }
    for (size_t mi = 0; mi < ms.size(); ++mi)
      printf("SUM %-16s m=%4d  speedup over fp16 x%.2f\n", set.name, ms[mi], sum_f[mi] / sum_t[mi]);
  }
  return 0;
}

// Every small-batch tile on a few shapes and m: data for the dispatcher.
static int tiles() {
  if (probe_hot()) printf("tiles%s\n", hot_note());
  std::mt19937 rng(99);
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  int* ws;
  CK(cudaMalloc(&ws, 64 << 20));
  CK(cudaMemset(ws, 0, 64 << 20));
  std::vector<std::pair<int, int>> shapes = {{8192, 24576}, {8192, 8192}, {8192, 43520}, {21760, 8192},
                                             {4096, 12288}, {4096, 4096},  {11008, 4096}, {3072, 3072}};
  for (auto [k, n] : shapes) {
    const ColdLayer layer(k, n, 32, prop.l2CacheSize, rng, /*fp16=*/false);
    for (int m : {1, 8, 16, 24, 32}) {
      printf("tiles k=%5d n=%5d m=%2d:", k, n, m);
      for (auto [tk, tn] : std::vector<std::pair<int, int>>{{128, 512}, {256, 256}, {512, 128}}) {
        if (n % tn || (m > 16 && tn == 512)) {  // 128 x 512 runs up to 16 rows
          printf("  %3dx%3d     -  ", tk, tn);
          continue;
        }
        std::vector<float> t;
        TrirunConfig cfg{};
        for (int r = 0; r < 45; ++r) {
          cfg = TrirunConfig{};
          cfg.thread_k = tk;
          cfg.thread_n = tn;
          CK(cudaEventRecord(e0));
          run_trirun(layer.dA, layer.B(r), layer.S(r), layer.dC, m, n, k, 128, ws, 64 << 20, &cfg, 0);
          CK(cudaEventRecord(e1));
          CK(cudaEventSynchronize(e1));
          float ms;
          CK(cudaEventElapsedTime(&ms, e0, e1));
          if (r >= 5) t.push_back(ms);
        }
        float md = median(t);
        printf("  %3dx%3d %6.1fus %4.0fGB/s st%d", tk, tn, md * 1e3, layer.qbytes / (md * 1e-3) / 1e9, cfg.stages);
      }
      TrirunConfig chosen{};  // what the dispatcher picks without a forced tile
      run_trirun(layer.dA, layer.B(0), layer.S(0), layer.dC, m, n, k, 128, ws, 64 << 20, &chosen, 0);
      CK(cudaDeviceSynchronize());
      printf("  auto %dx%d\n", chosen.thread_k, chosen.thread_n);
    }
  }
  return 0;
}

// One problem, a few launches: for ncu. Args: k n m g [thread_k thread_n]
// PROBE_ONE_SECONDS=s (`one`): after the timings, each kernel again back to back for s seconds, printing the
// wall-clock span (epoch seconds) and the median time per call in that span, so that nvidia-smi samples taken
// meanwhile (device-probe.sh `sustain`) give each kernel's steady clock and power: at the power cap what a
// call costs is its energy, and ncu's serialised replays never reach the cap.
static double probe_one_seconds() {
  const char* v = getenv("PROBE_ONE_SECONDS");
  return v == nullptr ? 0.0 : atof(v);
}

// Batches of 20 calls, each between its own pair of events, the next batch queued before the host waits
// for the one running, so that the GPU never idles between them.
template <typename Call>
static void sustain(const char* label, double seconds, Call call) {
  if (seconds <= 0) return;
  cudaEvent_t ev[2][2];
  for (auto& pair : ev)
    for (auto& e : pair) CK(cudaEventCreate(&e));
  auto enqueue = [&](int b) {
    CK(cudaEventRecord(ev[b][0]));
    for (int i = 0; i < 20; ++i) call();
    CK(cudaEventRecord(ev[b][1]));
  };
  timespec t0{}, t{};
  clock_gettime(CLOCK_REALTIME, &t0);
  std::vector<float> per_call;
  enqueue(0);
  for (int b = 1;; b ^= 1) {
    enqueue(b);
    CK(cudaEventSynchronize(ev[b ^ 1][1]));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, ev[b ^ 1][0], ev[b ^ 1][1]));
    per_call.push_back(ms * 50.f);  // us per call
    clock_gettime(CLOCK_REALTIME, &t);
    if ((t.tv_sec - t0.tv_sec) + 1e-9 * (t.tv_nsec - t0.tv_nsec) >= seconds) break;
  }
  CK(cudaDeviceSynchronize());
  for (auto& pair : ev)
    for (auto& e : pair) CK(cudaEventDestroy(e));
  std::sort(per_call.begin(), per_call.end());
  printf("sustain: %s from %.3f to %.3f: %zu calls, %.1f us per call (median of batches of 20)\n", label,
         t0.tv_sec + 1e-9 * t0.tv_nsec, t.tv_sec + 1e-9 * t.tv_nsec, per_call.size() * 20, per_call[per_call.size() / 2]);
}

static int one(int argc, char** argv) {
  if (argc < 6) return 2;
  int k = atoi(argv[2]), n = atoi(argv[3]), m = atoi(argv[4]), g = atoi(argv[5]);
  TrirunConfig cfg{};
  if (argc >= 8) {
    cfg.thread_k = atoi(argv[6]);
    cfg.thread_n = atoi(argv[7]);
  }
  std::mt19937 rng(7);
  std::vector<uint32_t> hb(static_cast<size_t>(k) * n / 16);
  for (auto& x : hb) x = rng();
  std::vector<__half> hs(static_cast<size_t>(g == -1 ? 1 : k / g) * n, __float2half(0.01f)), ha(static_cast<size_t>(m) * k);
  fill_half(ha, rng);
  void *dB, *dS, *dA, *dC;
  int* ws;
  CK(cudaMalloc(&dB, hb.size() * 4));
  CK(cudaMalloc(&dS, hs.size() * 2));
  CK(cudaMalloc(&dA, ha.size() * 2));
  CK(cudaMalloc(&dC, static_cast<size_t>(m) * n * 2));
  CK(cudaMalloc(&ws, 64 << 20));
  CK(cudaMemset(ws, 0, 64 << 20));
  CK(cudaMemcpy(dB, hb.data(), hb.size() * 4, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dS, hs.data(), hs.size() * 2, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dA, ha.data(), ha.size() * 2, cudaMemcpyHostToDevice));
  TrirunConfig used{};
  for (int i = 0; i < 4; ++i) {
    used = cfg;
    run_trirun((__half*)dA, (uint32_t*)dB, (__half*)dS, (__half*)dC, m, n, k, g, ws, 64 << 20, &used, 0);
  }
  CK(cudaDeviceSynchronize());
  // Warm (L2-resident weights when they fit): what the launch configuration costs, not memory.
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  std::vector<float> times;
  for (int r = 0; r < 7; ++r) {
    CK(cudaEventRecord(e0));
    for (int i = 0; i < 10; ++i) {
      TrirunConfig c = cfg;
      run_trirun((__half*)dA, (uint32_t*)dB, (__half*)dS, (__half*)dC, m, n, k, g, ws, 64 << 20, &c, 0);
    }
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    times.push_back(ms * 100.f);  // us per call
  }
  std::sort(times.begin(), times.end());
  printf("one: k=%d n=%d m=%d g=%d variant %d, %d blocks x %d threads, %d stages, m_blocks %d, tile %dx%d: %.1f us per call (warm, median)\n",
         k, n, m, g, used.variant, used.sms, used.threads, used.stages, used.m_blocks, used.thread_k, used.thread_n,
         times[3]);
  sustain("trirun", probe_one_seconds(), [&] {
    TrirunConfig c = cfg;
    run_trirun((__half*)dA, (uint32_t*)dB, (__half*)dS, (__half*)dC, m, n, k, g, ws, 64 << 20, &c, 0);
  });
  // PROBE_ONE_CUBLAS=1: the same product in cuBLAS FP16 afterwards (fp16 weights, fp16 out), so that a
  // profiler sees both kernels of one shape in one process (device-probe.sh's `power` mode).
  const char* with_cublas = getenv("PROBE_ONE_CUBLAS");
  if (with_cublas != nullptr && with_cublas[0] == '1') {
    std::vector<__half> hw(static_cast<size_t>(k) * n);
    fill_half(hw, rng);
    void *dW, *dC16;
    CK(cudaMalloc(&dW, hw.size() * 2));
    CK(cudaMalloc(&dC16, static_cast<size_t>(m) * n * 2));
    CK(cudaMemcpy(dW, hw.data(), hw.size() * 2, cudaMemcpyHostToDevice));
    cublasHandle_t h;
    CB(cublasCreate(&h));
    for (int i = 0; i < 4; ++i) gemm_ref(h, (__half*)dA, (__half*)dW, dC16, false, m, n, k, 0);
    CK(cudaDeviceSynchronize());
    std::vector<float> ftimes;
    for (int r = 0; r < 7; ++r) {
      CK(cudaEventRecord(e0));
      for (int i = 0; i < 10; ++i) gemm_ref(h, (__half*)dA, (__half*)dW, dC16, false, m, n, k, 0);
      CK(cudaEventRecord(e1));
      CK(cudaEventSynchronize(e1));
      float ms = 0;
      CK(cudaEventElapsedTime(&ms, e0, e1));
      ftimes.push_back(ms * 100.f);
    }
    std::sort(ftimes.begin(), ftimes.end());
    printf("one: cuBLAS FP16 k=%d n=%d m=%d: %.1f us per call (warm, median)\n", k, n, m, ftimes[3]);
    sustain("cublas", probe_one_seconds(), [&] { gemm_ref(h, (__half*)dA, (__half*)dW, dC16, false, m, n, k, 0); });
    CB(cublasDestroy(h));
    CK(cudaFree(dW));
    CK(cudaFree(dC16));
  }
  return 0;
}


#ifdef TRIRUN_TRACE
extern "C" cudaError_t trirun_trace_reset();
extern "C" cudaError_t trirun_trace_read(unsigned long long* out, size_t count);
extern "C" cudaError_t trirun_trace_read_sums(unsigned long long* out, size_t count);

__global__ void empty_kernel(int* sink) {
  extern __shared__ int sm[];
  if (sink != nullptr && threadIdx.x == 1023) sm[0] = *sink;
}

// Where a call's time goes: four back-to-back cold calls, each block's
// %globaltimer / clock64 at entry (0), first tile in shared memory (1), end of
// the main loop (2), slot stores + arrival atomic (3), before the final
// resolve (4), exit (5) in the small-batch kernels; in the Hopper kernel
// (m >= 33 on sm_90) 2..4 are the last column's lock wait (2 -> 3) and its
// partial sums and C stores (3 -> 4), 4 -> 5 the lock's release. Also the
// launch floor of an empty kernel.
static int trace(int argc, char** argv) {
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  int clock_khz = 0;
  CK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, 0));
  printf("device: %s, %d SMs, clock attr %d MHz\n", prop.name, prop.multiProcessorCount, clock_khz / 1000);
  cudaStream_t st;
  CK(cudaStreamCreate(&st));
  cudaEvent_t ev[5];
  for (auto& e : ev) CK(cudaEventCreate(&e));
  // Empty kernels: launch floor back to back, with no and with 200 KB of shared memory, and alternating.
  {
    CK(cudaFuncSetAttribute(empty_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024));
    const int sms = prop.multiProcessorCount;
    auto time_seq = [&](const char* what, auto&& body) {
      std::vector<float> t;
      for (int r = 0; r < 7; ++r) {
        CK(cudaEventRecord(ev[0], st));
        for (int i = 0; i < 100; ++i) body(i);
        CK(cudaEventRecord(ev[1], st));
        CK(cudaEventSynchronize(ev[1]));
        float ms;
        CK(cudaEventElapsedTime(&ms, ev[0], ev[1]));
        t.push_back(ms * 10.f);
      }
      printf("empty kernels, %s: %.2f us per launch (median of 7 x 100)\n", what, median(t));
    };
    time_seq("132x256, no smem", [&](int) { empty_kernel<<<sms, 256, 0, st>>>(nullptr); });
    time_seq("132x256, 200 KB smem", [&](int) { empty_kernel<<<sms, 256, 200 * 1024, st>>>(nullptr); });
    time_seq("alternating 0 / 200 KB", [&](int i) { empty_kernel<<<sms, 256, (i % 2) * 200 * 1024, st>>>(nullptr); });
    time_seq("1x32, no smem", [&](int) { empty_kernel<<<1, 32, 0, st>>>(nullptr); });
  }
  std::vector<std::array<int, 3>> shapes;
  for (int i = 2; i + 2 < argc; i += 3) shapes.push_back({atoi(argv[i]), atoi(argv[i + 1]), atoi(argv[i + 2])});
  if (shapes.empty())
    shapes = {{4096, 4096, 1}, {4096, 12288, 1}, {4096, 22016, 1}, {11008, 4096, 1}, {8192, 28672, 1}, {4096, 4096, 16}};
  int* ws;
  CK(cudaMalloc(&ws, 64 << 20));
  CK(cudaMemset(ws, 0, 64 << 20));
  std::mt19937 rng(11);
  for (const auto& shape : shapes) {
    const int k = shape[0], n = shape[1], m = shape[2];
    const size_t bbytes = static_cast<size_t>(k) * n / 4, sbytes = static_cast<size_t>(k / 128) * n * 2;
    const int copies = std::max<int>(4, static_cast<int>((4ull * prop.l2CacheSize) / (bbytes + sbytes)) + 1);
    std::vector<void*> Bs(copies), Ss(copies);
    std::vector<uint32_t> hb(bbytes / 4);
    for (auto& x : hb) x = rng();
    std::vector<__half> hs(sbytes / 2, __float2half(0.01f));
    for (int c = 0; c < copies; ++c) {
      CK(cudaMalloc(&Bs[c], bbytes));
      CK(cudaMalloc(&Ss[c], sbytes));
      CK(cudaMemcpy(Bs[c], hb.data(), bbytes, cudaMemcpyHostToDevice));
      CK(cudaMemcpy(Ss[c], hs.data(), sbytes, cudaMemcpyHostToDevice));
    }
    void *dA, *dC;
    CK(cudaMalloc(&dA, static_cast<size_t>(m) * k * 2));
    CK(cudaMemset(dA, 0, static_cast<size_t>(m) * k * 2));
    CK(cudaMalloc(&dC, static_cast<size_t>(m) * n * 2));
    TrirunConfig cfg{};
    int call = 0;
    auto launch = [&]() {
      cfg = TrirunConfig{};
      run_trirun((__half*)dA, (uint32_t*)Bs[call % copies], (__half*)Ss[call % copies], (__half*)dC, m, n, k, 128, ws,
                 64 << 20, &cfg, st);
      ++call;
    };
    for (int i = 0; i < 2 * copies; ++i) launch();
    // Back-to-back per-call time (cold weights).
    std::vector<float> per;
    for (int r = 0; r < 9; ++r) {
      CK(cudaEventRecord(ev[0], st));
      for (int i = 0; i < 20; ++i) launch();
      CK(cudaEventRecord(ev[1], st));
      CK(cudaEventSynchronize(ev[1]));
      float ms;
      CK(cudaEventElapsedTime(&ms, ev[0], ev[1]));
      per.push_back(ms * 50.f);
    }
    CK(cudaStreamSynchronize(st));
    CK(trirun_trace_reset());
    for (int i = 0; i < 4; ++i) {
      CK(cudaEventRecord(ev[i], st));
      launch();
    }
    CK(cudaEventRecord(ev[4], st));
    CK(cudaEventSynchronize(ev[4]));
    const int P = 6;
    std::vector<unsigned long long> tr(4 * 256 * 2 * P);
    CK(trirun_trace_read(tr.data(), tr.size()));
    std::vector<unsigned long long> sums(4 * 256 * 4);  // Hopper kernel: slice ends summed per block
    CK(trirun_trace_read_sums(sums.data(), sums.size()));
    printf("\n== k=%d n=%d m=%d: tile %dx%d, %d blocks, %d stages; back-to-back %.2f us/call (cold, %d copies)\n", k,
           n, m, cfg.thread_k, cfg.thread_n, cfg.sms, cfg.stages, median(per), copies);
    auto at = [&](int l, int b, int p, int clk) { return tr[((static_cast<size_t>(l) * 256 + b) * P + p) * 2 + clk]; };
    unsigned long long prev_end = 0;
    for (int l = 0; l < 4; ++l) {
      float ems = 0;
      CK(cudaEventElapsedTime(&ems, ev[l], ev[l + 1]));
      const int blocks = cfg.sms;
      unsigned long long s_min = ~0ull, s_max = 0, e_min = ~0ull, e_max = 0;
      std::vector<float> data, loop, red, red_wait, fin, total;
      const double cyc_us = 1.0 / (clock_khz / 1000.0);
      for (int b = 0; b < blocks; ++b) {
        const unsigned long long s0 = at(l, b, 0, 0), s5 = at(l, b, 5, 0);
        if (s0 == 0) continue;
        s_min = std::min(s_min, s0);
        s_max = std::max(s_max, s0);
        e_min = std::min(e_min, s5);
        e_max = std::max(e_max, s5);
        auto c = [&](int p) { return static_cast<double>(at(l, b, p, 1)); };
        if (at(l, b, 1, 1)) data.push_back((c(1) - c(0)) * cyc_us);
        if (at(l, b, 1, 1)) loop.push_back((c(2) - c(1)) * cyc_us);
        if (at(l, b, 2, 1)) red.push_back((c(4) - c(2)) * cyc_us);  // blocks with no tile have no point 2
        if (at(l, b, 2, 1)) red_wait.push_back((c(3) - c(2)) * cyc_us);  // Hopper: the lock wait; small: slot stores
        fin.push_back((c(5) - c(4)) * cyc_us);
        total.push_back((c(5) - c(0)) * cyc_us);
      }
      auto mx = [](std::vector<float> v) { return v.empty() ? 0.f : *std::max_element(v.begin(), v.end()); };
      printf("launch %d: event %.2f us; gap from previous launch's last exit %.2f us; block starts spread %.2f us; "
             "span first start..last exit %.2f us; exits spread %.2f us\n",
             l, ems * 1000.f, prev_end ? (s_min - prev_end) / 1000.0 : 0.0, (s_max - s_min) / 1000.0,
             (e_max - s_min) / 1000.0, (e_max - e_min) / 1000.0);
      printf("  per block (clock64 at the attribute clock), median / max us: first data %.2f / %.2f, main loop %.2f / "
             "%.2f, column reduction (slots+atomic or chain) %.2f / %.2f, final resolve %.2f / %.2f, total %.2f / %.2f\n",
             median(data), mx(data), median(loop), mx(loop), median(red), mx(red), median(fin), mx(fin), median(total),
             mx(total));
      printf("  of the column reduction, points 2 -> 3 (Hopper kernel: the lock wait) median / max us: %.2f / %.2f\n",
             median(red_wait), mx(red_wait));
      // Hopper kernel: all of a block's slice ends (lock wait, partial sums, C), against its whole span.
      std::vector<float> ends, end_count, ends_read, ends_c, ends_store, ends_share;
      for (int b = 0; b < blocks && b < 256; ++b) {
        const unsigned long long* sb = &sums[(static_cast<size_t>(l) * 256 + b) * 4];
        if (sb[1] == 0) continue;
        const double span = static_cast<double>(at(l, b, 5, 1)) - static_cast<double>(at(l, b, 0, 1));
        ends.push_back(sb[0] * cyc_us);
        end_count.push_back(static_cast<float>(sb[1]));
        ends_read.push_back(sb[2] * cyc_us);
        ends_c.push_back(sb[3] * cyc_us);
        ends_store.push_back((sb[0] - sb[3]) * cyc_us);  // ends that store a partial for the next block
        if (span > 0) ends_share.push_back(static_cast<float>(sb[0] / span));
      }
      if (!ends.empty())
        printf("  Hopper slice ends per block, median / max: %.2f / %.2f us over %.0f / %.0f ends (those reading a "
               "partial, which may also write C, %.2f / %.2f us; those writing C %.2f / %.2f us; those storing a "
               "partial %.2f / %.2f us); share of the block's span %.3f / %.3f\n",
               median(ends), mx(ends), median(end_count), mx(end_count), median(ends_read), mx(ends_read),
               median(ends_c), mx(ends_c), median(ends_store), mx(ends_store), median(ends_share), mx(ends_share));
      prev_end = e_max;
    }
    for (int c = 0; c < copies; ++c) {
      cudaFree(Bs[c]);
      cudaFree(Ss[c]);
    }
    cudaFree(dA);
    cudaFree(dC);
  }
  return 0;
}
#endif


// launch m1,m2,...: per-call time of back-to-back calls issued on a stream
// against the same calls captured into one CUDA graph, TriRun and cuBLAS
// alike (cold weights rotated through copies larger than 4x L2): how much of
// a call is launch cost rather than kernel. PROBE_TRIRUN_ONLY=1 leaves cuBLAS
// out (no fp16 weights to make: an A/B of two TriRun builds takes a third of
// the time).
static int launches(const std::vector<int>& ms) {
  const bool with_fp16 = std::getenv("PROBE_TRIRUN_ONLY") == nullptr;
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  printf("device: %s, %d SMs%s\n", prop.name, prop.multiProcessorCount, hot_note());
  std::mt19937 rng(99);
  cublasHandle_t h;
  CB(cublasCreate(&h));
  cudaStream_t st;
  CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  int* ws;
  const size_t wsb = 64 << 20;
  CK(cudaMalloc(&ws, wsb));
  CK(cudaMemset(ws, 0, wsb));
  const size_t l2 = prop.l2CacheSize;
  const int calls = 24;
  int graph_checked = 0, graph_failures = 0;
  double graph_worst = 0;
  // PROBE_SETS=name,name: only those model sets (names as printed, e.g. llama2-7b,bitnet-2b).
  const char* only_sets = std::getenv("PROBE_SETS");
  for (auto& set : kModelSets) {
    if (only_sets != nullptr &&
        (std::string(",") + only_sets + ",").find(std::string(",") + set.name + ",") == std::string::npos)
      continue;
    std::vector<double> sq(ms.size()), sqg(ms.size()), sf(ms.size()), sfg(ms.size());
    for (auto [k, n] : set.kn) {
      const ColdLayer layer(k, n, *std::max_element(ms.begin(), ms.end()), l2, rng, with_fp16);
      for (size_t mi = 0; mi < ms.size(); ++mi) {
        const int m = ms[mi];
        TrirunConfig cfg{};
        auto tri = [&](int i) {
          cfg = TrirunConfig{};
          run_trirun(layer.dA, layer.B(i), layer.S(i), layer.dC, m, n, k, 128, ws, wsb, &cfg, st);
        };
        auto f16 = [&](int i) { gemm_ref(h, layer.dA, layer.W(i), layer.dC, false, m, n, k, st); };
        // Median per-call time of `calls` back-to-back calls, 9 samples (one warm-up).
        auto timed = [&](auto&& body) {
          std::vector<float> t;
          for (int r = 0; r < 10; ++r) {
            CK(cudaEventRecord(e0, st));
            body();
            CK(cudaEventRecord(e1, st));
            CK(cudaEventSynchronize(e1));
            float ms_;
            CK(cudaEventElapsedTime(&ms_, e0, e1));
            if (r > 0) t.push_back(ms_ * 1000.f / calls);
          }
          return median(t);
        };
        auto graph_of = [&](auto&& call) {
          cudaGraph_t g;
          cudaGraphExec_t ge;
          CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
          for (int i = 0; i < calls; ++i) call(i);
          CK(cudaStreamEndCapture(st, &g));
          CK(cudaGraphInstantiate(&ge, g, 0));
          CK(cudaGraphDestroy(g));
          return ge;
        };
        const float q = timed([&] { for (int i = 0; i < calls; ++i) tri(i); });
        cudaGraphExec_t gq = graph_of(tri);
        const float qg = timed([&] { CK(cudaGraphLaunch(gq, st)); });
        // The graph's result (dependent launches on a non-blocking stream, one SM fewer, clusters
        // where enabled) against one eager call on the legacy stream (no PDL, all SMs): the
        // schedules may sum in other orders, so a relative error, not bits. Every weight copy
        // holds the same values, so any call of the graph gives the same C. NaN-poisoned first.
        {
          const size_t count = static_cast<size_t>(m) * n;
          std::vector<__half> got(count), want(count);
          CK(cudaMemsetAsync(layer.dC, 0xff, count * 2, st));
          CK(cudaGraphLaunch(gq, st));
          CK(cudaStreamSynchronize(st));
          CK(cudaMemcpy(got.data(), layer.dC, count * 2, cudaMemcpyDeviceToHost));
          CK(cudaMemset(layer.dC, 0xff, count * 2));
          TrirunConfig eager{};
          run_trirun(layer.dA, layer.B(0), layer.S(0), layer.dC, m, n, k, 128, ws, wsb, &eager, nullptr);
          CK(cudaDeviceSynchronize());
          CK(cudaMemcpy(want.data(), layer.dC, count * 2, cudaMemcpyDeviceToHost));
          double diff = 0, norm = 0;
          size_t bad = 0;
          for (size_t i = 0; i < count; ++i) {
            const double g = __half2float(got[i]), w = __half2float(want[i]);
            if (!std::isfinite(g) || !std::isfinite(w)) ++bad;
            diff += (g - w) * (g - w);
            norm += w * w;
          }
          const double rel = norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
          graph_checked++;
          graph_worst = std::max(graph_worst, rel);
          if (bad > 0 || !(rel < 1e-3)) {
            graph_failures++;
            printf("GRAPH MISMATCH %s k=%d n=%d m=%d: rel %.3g, %zu non-finite (graph b=%d, eager b=%d)\n", set.name, k,
                   n, m, rel, bad, cfg.sms, eager.sms);
          }
        }
        CK(cudaGraphExecDestroy(gq));
        float f = 0, fg = 0;  // 0: not measured (PROBE_TRIRUN_ONLY)
        if (with_fp16) {
          f = timed([&] { for (int i = 0; i < calls; ++i) f16(i); });
          cudaGraphExec_t gf = graph_of(f16);
          fg = timed([&] { CK(cudaGraphLaunch(gf, st)); });
          CK(cudaGraphExecDestroy(gf));
        }
        sq[mi] += q;
        sqg[mi] += qg;
        sf[mi] += f;
        sfg[mi] += fg;
        printf("%-16s k=%5d n=%5d m=%4d  stream: trirun %7.1f fp16 %7.1f us x%.2f   graph: trirun %7.1f fp16 %7.1f us x%.2f  [v%d st=%d thr=%d b=%d]\n",
               set.name, k, n, m, q, f, f / q, qg, fg, fg / qg, cfg.variant, cfg.stages, cfg.threads, cfg.sms);
      }
    }
    for (size_t mi = 0; mi < ms.size(); ++mi)
      printf("SUM %-16s m=%4d  stream x%.2f (trirun %.1f us)  graph x%.2f (trirun %.1f us)\n", set.name, ms[mi],
             sf[mi] / sq[mi], sq[mi], sfg[mi] / sqg[mi], sqg[mi]);
  }
  if (graph_checked == 0) {
    fprintf(stderr, "launch: no model set matched PROBE_SETS=%s\n", only_sets != nullptr ? only_sets : "");
    return 2;
  }
  printf("graph check: %d (layer, m) points, %d mismatches, worst rel %.3g against an eager legacy-stream call\n",
         graph_checked, graph_failures, graph_worst);
  return graph_failures > 0 ? 1 : 0;
}

int main(int argc, char** argv) {
  std::string what = argc > 1 ? argv[1] : "check";
  bool quick = argc > 2 && std::string(argv[2]) == "--quick";
  if (what == "check") return check(quick, false);
  if (what == "one") return one(argc, argv);
  if (what == "tiles") return tiles();
  if (what == "sanitize") return check(true, true);
  if (what == "speed") return speed(quick);
  if (what == "speedm" || what == "launch") {  // speedm|launch m1,m2,...: at these m only
    std::vector<int> ms;
    for (const char* p = argc > 2 ? argv[2] : "64,128,256"; *p;) {
      ms.push_back(std::atoi(p));
      while (*p && *p != ',') ++p;
      if (*p == ',') ++p;
    }
    return what == "launch" ? launches(ms) : speed(false, ms);
  }
#ifdef TRIRUN_TRACE
  if (what == "trace") return trace(argc, argv);
#endif
  fprintf(stderr, "usage: kernel-probe check|speed [--quick] | speedm|launch m1,m2,... | sanitize | tiles | one k n m g\n");
  return 2;
}

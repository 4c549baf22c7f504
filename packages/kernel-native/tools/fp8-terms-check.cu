// The fp8 plan for m <= 16 checked on the CPU (kernel-native NOTES.md, session 26): no GPU, no kernel runs.
// The small-batch tile would turn each packed word into four e4m3 weight registers by PRMT lookups
// (trirun.cu's fp8_word, built here for the host) and multiply them with m16n8k32 e4m3 MMAs, an fp16
// activation split into three fp8 terms (e4m3, e4m3, e5m2) after a per-row power-of-two scale
// (fp8_row_shift, fp8_activation_terms), laid out in 32-byte planes per k32 chunk (fp8_plane_byte). Checks:
//   1. terms: every scaled fp16 value split into the terms and summed back: from which |x| up every value is
//      exact (x the scaled value, at most 448; must be 2 or less), and the worst absolute error below that.
//      For comparison, three e4m3 terms. planes: fp8_plane_byte follows fp8_word's row order.
//   2. decode: fp8_word<true> on every word of the reference vectors (../shared/fixtures/trirun-layout) against
//      their codes: byte b of register j of lane l's word w in row tr and 64-column chunk c is code - 1 of
//      column 64 c + 16 (2 w + j / 2) + 8 (j % 2) + l / 4, row 16 tr + 2 (l % 4) + {0, 8, 1, 9}[b].
//   3. matmul: the whole plan on the vectors' weights and fresh random activations (Gaussian rows with a few
//      outlier channels up to 4096x), each m16n8k32 emulated from its lanes' fragments (PTX ISA layouts),
//      sums flushed to fp32 every 128 rows of k as the kernel does, against an fp64 reference of the fp16
//      inputs; beside it the fp16 path (exact products, fp32 sums), the e4m3 x 3 split, and the plan with MMAs
//      that drop 10 accumulator bits. The relative Frobenius error of each, as the device check measures it
//      (<= 1e-3).
// Usage: fp8-terms-check <fixtures directory>
// Build (CPU, a few seconds):
//   nvcc -std=c++17 -DTRIRUN_DISPATCH_RECORD -DTRIRUN_HAVE_SM90A -Isrc/kernel tools/fp8-terms-check.cu -o fp8-terms-check
#ifndef TRIRUN_DISPATCH_RECORD
#define TRIRUN_DISPATCH_RECORD
#endif
#include "trirun.cu"

#include <cuda_fp8.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace {

float fp8_value(uint8_t b, __nv_fp8_interpretation_t kind) {
  return __half2float(__half(__nv_cvt_fp8_to_halfraw(b, kind)));
}
uint8_t to_fp8(float x, __nv_fp8_interpretation_t kind) { return __nv_cvt_float_to_fp8(x, __NV_SATFINITE, kind); }

// x (already scaled, |x| <= 448) as three fp8 terms; the last e5m2 (trirun.cu's fp8_activation_terms) or, for
// comparison, e4m3.
struct Terms {
  uint8_t t[3];
  __nv_fp8_interpretation_t last;
};
Terms split(float x, __nv_fp8_interpretation_t last) {
  Terms s{{0, 0, 0}, last};
  if (last == __NV_E5M2) {
    trirun::fp8_activation_terms(x, s.t);
    return s;
  }
  float rest = x;
  for (int i = 0; i < 3; ++i) {
    s.t[i] = to_fp8(rest, __NV_E4M3);
    rest -= fp8_value(s.t[i], __NV_E4M3);
  }
  return s;
}
float term_value(const Terms& s, int i) { return fp8_value(s.t[i], i == 2 ? s.last : __NV_E4M3); }
double joined(const Terms& s) { return static_cast<double>(term_value(s, 0)) + term_value(s, 1) + term_value(s, 2); }

int failures = 0;
void expect(bool ok, const char* what) {
  if (!ok) {
    ++failures;
    std::printf("FAIL: %s\n", what);
  }
}

// 1. Every 11-bit significand at every exponent up to 448.
void check_terms() {
  for (const auto last : {__NV_E5M2, __NV_E4M3}) {
    const char* name = last == __NV_E5M2 ? "e4m3+e4m3+e5m2" : "e4m3 x 3";
    int lowest_exact = 100;  // the smallest exponent from which every value up is exact
    double worst_below = 0;
    for (int e = 8; e >= -40; --e) {
      bool all_exact = true;
      for (int m = 1024; m < 2048; ++m)
        for (int sign = -1; sign <= 1; sign += 2) {
          const float x = std::ldexp(static_cast<float>(sign * m), e - 10);
          if (std::fabs(x) > 448.0f) continue;
          const double err = std::fabs(joined(split(x, last)) - x);
          if (err != 0) all_exact = false;
          worst_below = std::max(worst_below, err);
        }
      if (!all_exact) break;
      lowest_exact = e;
    }
    std::printf("terms %s: exact for |x| >= 2^%d (of at most 448); worst absolute error below: %.3g (%.3g of 448)\n",
                name, lowest_exact, worst_below, worst_below / 448);
    if (last == __NV_E5M2) {
      expect(lowest_exact <= 1, "e4m3+e4m3+e5m2 not exact from |x| >= 2");
      expect(worst_below <= std::ldexp(1.0, -13), "e4m3+e4m3+e5m2 worse than 2^-13 below 2");
    }
  }
}

struct Fixture {
  std::string name;
  int k = 0, n = 0, g = 0;
  std::vector<uint8_t> q;     // (k, n) codes
  std::vector<uint32_t> B;    // (k / 16, n) packed words
  std::vector<uint16_t> s;    // (k / g, n) natural scales, fp16 bits
};

template <typename T>
std::vector<T> read_all(const std::string& path, size_t count) {
  std::ifstream f(path, std::ios::binary);
  std::vector<T> v(count);
  if (!f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(count * sizeof(T)))) {
    std::printf("FAIL: cannot read %zu values from %s\n", count, path.c_str());
    ++failures;
    v.clear();
  }
  return v;
}

Fixture load(const std::string& dir, const std::string& name, int k, int n, int g) {
  Fixture f;
  f.name = name, f.k = k, f.n = n, f.g = g < 0 ? k : g;
  f.q = read_all<uint8_t>(dir + "/" + name + ".q", static_cast<size_t>(k) * n);
  f.B = read_all<uint32_t>(dir + "/" + name + ".B", static_cast<size_t>(k / 16) * n);
  f.s = read_all<uint16_t>(dir + "/" + name + ".s", static_cast<size_t>(k / f.g) * n);
  return f;
}

constexpr int kRowOrder[4] = {0, 8, 1, 9};  // fp8_word's byte b holds row k0 + kRowOrder[b]

// 2. fp8_word<true> against the codes of every word.
void check_decode(const Fixture& f) {
  long bytes = 0, wrong = 0;
  for (int tr = 0; tr < f.k / 16; ++tr)
    for (int c = 0; c < f.n / 64; ++c)
      for (int lane = 0; lane < 32; ++lane)
        for (int w = 0; w < 2; ++w) {
          uint32_t r[4];
          trirun::fp8_word<true>(f.B[static_cast<size_t>(tr) * f.n + 64 * c + 2 * lane + w], r);
          for (int j = 0; j < 4; ++j)
            for (int b = 0; b < 4; ++b) {
              const int col = 64 * c + 16 * (2 * w + j / 2) + 8 * (j % 2) + lane / 4;
              const int row = 16 * tr + 2 * (lane % 4) + kRowOrder[b];
              const float want = static_cast<float>(f.q[static_cast<size_t>(row) * f.n + col]) - 1.0f;
              const float got = fp8_value(static_cast<uint8_t>(r[j] >> (8 * b)), __NV_E4M3);
              ++bytes;
              if (got != want) ++wrong;
            }
        }
  std::printf("decode %s: %ld weights, %ld wrong\n", f.name.c_str(), bytes, wrong);
  expect(wrong == 0 && bytes > 0, "fp8_word<true> disagrees with the reference vectors");
}

// fp8_plane_byte: a permutation of a chunk's 32 rows that puts row 16 h + 2 t + kRowOrder[b] at byte b of lane
// t's register h.
void check_planes() {
  bool seen[32] = {};
  int wrong = 0;
  for (int r = 0; r < 32; ++r) {
    const int pos = trirun::fp8_plane_byte(r);
    if (pos < 0 || pos >= 32 || seen[pos]) {
      ++wrong;
      continue;
    }
    seen[pos] = true;
    const int h = pos / 16, t = (pos % 16) / 4, b = pos % 4;
    if (r != 16 * h + 2 * t + kRowOrder[b]) ++wrong;
  }
  std::printf("planes: %d of 32 rows misplaced\n", wrong);
  expect(wrong == 0, "fp8_plane_byte does not follow fp8_word's row order");
}

// m16n8k32 with 8-bit inputs, per the PTX ISA's fragment layouts: lane (g, t) = (lane / 4, lane % 4) holds A
// rows g (registers 0, 2) and g + 8 (1, 3) at k 4 t .. 4 t + 3 (registers 0, 1) and 16 + 4 t .. (2, 3); B
// column g at k 4 t .. (register 0) and 16 + 4 t .. (1); D rows g, g + 8, columns 2 t, 2 t + 1.
// `truncating`: a pessimistic model of the fp8 MMAs on Ada and Hopper, reported to keep fewer accumulator bits
// than fp32: each result's 10 lowest mantissa bits dropped.
float truncated(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u &= ~0x3ffu;
  std::memcpy(&x, &u, 4);
  return x;
}
void mma_16832(const uint32_t (&a)[32][4], const uint32_t (&b)[32][2], __nv_fp8_interpretation_t b_kind,
               float (&d)[32][4], bool truncating) {
  auto a_at = [&](int row, int k) {
    const int lane = 4 * (row % 8) + (k % 16) / 4, reg = (row >= 8 ? 1 : 0) + (k >= 16 ? 2 : 0);
    return fp8_value(static_cast<uint8_t>(a[lane][reg] >> (8 * (k % 4))), __NV_E4M3);
  };
  auto b_at = [&](int k, int col) {
    const int lane = 4 * col + (k % 16) / 4, reg = k >= 16 ? 1 : 0;
    return fp8_value(static_cast<uint8_t>(b[lane][reg] >> (8 * (k % 4))), b_kind);
  };
  for (int lane = 0; lane < 32; ++lane)
    for (int e = 0; e < 4; ++e) {
      const int row = lane / 4 + (e >= 2 ? 8 : 0), col = 2 * (lane % 4) + e % 2;
      float sum = d[lane][e];  // the products are exact; the order of the sum is the hardware's
      for (int k = 0; k < 32; ++k) sum += a_at(row, k) * b_at(k, col);
      d[lane][e] = truncating ? truncated(sum) : sum;
    }
}

// 3. Outputs of 8 activation rows against fp64, for one fixture, one outlier ratio.
struct Errors {
  double fp16 = 0, fp8 = 0, e4m3x3 = 0;           // outputs rounded to fp16, as the kernels write them
  double fp16_f32 = 0, fp8_f32 = 0, e4m3x3_f32 = 0;  // the fp32 sums before that rounding
  double fp8_truncating = 0;                        // as written, with the truncating MMA model
};
Errors check_matmul(const Fixture& f, float outlier, std::mt19937& rng) {
  constexpr int kRows = 8;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> channel(0, f.k - 1);
  std::vector<float> a(static_cast<size_t>(kRows) * f.k);  // fp16 values
  std::vector<int> outliers;  // four distinct channels
  while (outliers.size() < 4) {
    const int o = channel(rng);
    if (std::find(outliers.begin(), outliers.end(), o) == outliers.end()) outliers.push_back(o);
  }
  for (int r = 0; r < kRows; ++r)
    for (int i = 0; i < f.k; ++i) {
      float v = normal(rng);
      for (int o : outliers)
        if (i == o) v *= outlier;
      a[static_cast<size_t>(r) * f.k + i] = __half2float(__float2half(v));
    }
  auto w_at = [&](int row, int col) {
    const float scale = __half2float(__ushort_as_half(f.s[static_cast<size_t>(row / f.g) * f.n + col]));
    return (static_cast<float>(f.q[static_cast<size_t>(row) * f.n + col]) - 1.0f) * scale;
  };
  // The reference, and the fp16 path's model: per group, fp32 sums of exact products, scaled once.
  std::vector<double> ref(static_cast<size_t>(kRows) * f.n), fp16(ref.size()), fp16_f32(ref.size());
  for (int r = 0; r < kRows; ++r)
    for (int col = 0; col < f.n; ++col) {
      double exact = 0;
      float acc = 0;
      for (int g0 = 0; g0 < f.k; g0 += f.g) {
        float tmp = 0;
        for (int i = g0; i < g0 + f.g; ++i) {
          const float code = static_cast<float>(f.q[static_cast<size_t>(i) * f.n + col]) - 1.0f;
          tmp += a[static_cast<size_t>(r) * f.k + i] * code;
          exact += static_cast<double>(a[static_cast<size_t>(r) * f.k + i]) * w_at(i, col);
        }
        acc = std::fma(tmp, __half2float(__ushort_as_half(f.s[static_cast<size_t>(g0 / f.g) * f.n + col])), acc);
      }
      ref[static_cast<size_t>(r) * f.n + col] = exact;
      fp16[static_cast<size_t>(r) * f.n + col] = __half2float(__float2half(acc));
      fp16_f32[static_cast<size_t>(r) * f.n + col] = acc;
    }
  auto rel = [&](const std::vector<double>& out) {
    double num = 0, den = 0;
    for (size_t i = 0; i < out.size(); ++i) {
      num += (out[i] - ref[i]) * (out[i] - ref[i]);
      den += ref[i] * ref[i];
    }
    return std::sqrt(num / den);
  };
  // The fp8 plan, fragment by fragment: one warp, 8 rows (one n8 block), per 64-column chunk and k32 step
  // (rows 32 s .. 32 s + 31, packed rows 2 s and 2 s + 1), tile j's A fragment {step 2s: n8 blocks 0, 1; step
  // 2s + 1: 0, 1} from fp8_word; B of each term from its planes (fp8_plane_byte); per group of 128 rows fp32
  // sums scaled once, as the kernel's grouped tile; the row's shift undone at the end.
  auto plan = [&](__nv_fp8_interpretation_t last, bool round_to_fp16, bool truncating = false) {
    std::vector<int> shift(kRows);
    for (int r = 0; r < kRows; ++r) {
      float m = 0;
      for (int i = 0; i < f.k; ++i) m = std::max(m, std::fabs(a[static_cast<size_t>(r) * f.k + i]));
      shift[r] = trirun::fp8_row_shift(m);
    }
    std::vector<Terms> terms(a.size());
    for (int r = 0; r < kRows; ++r)
      for (int i = 0; i < f.k; ++i)
        terms[static_cast<size_t>(r) * f.k + i] =
            split(std::ldexp(a[static_cast<size_t>(r) * f.k + i], shift[r]), last);
    std::vector<double> out(ref.size());
    for (int c = 0; c < f.n / 64; ++c) {
      float acc[4][32][4] = {};
      for (int g0 = 0; g0 < f.k; g0 += f.g) {
        float tmp[4][32][4] = {};
        for (int s = g0 / 32; s < (g0 + f.g) / 32; ++s) {
          uint32_t words[2][32][2][4];  // [step][lane][word][register]
          for (int h = 0; h < 2; ++h)
            for (int lane = 0; lane < 32; ++lane)
              for (int w = 0; w < 2; ++w)
                trirun::fp8_word<true>(f.B[static_cast<size_t>(2 * s + h) * f.n + 64 * c + 2 * lane + w],
                                       words[h][lane][w]);
          for (int term = 0; term < 3; ++term) {
            // The term's planes of this k32 chunk for the 8 rows, written as the pre-pass would
            // (fp8_plane_byte), and each lane's B registers read from them as ldmatrix would: bytes 4 t ..
            // and 16 + 4 t .. of its row's plane.
            uint8_t plane[kRows][32];
            for (int r = 0; r < kRows; ++r)
              for (int i = 0; i < 32; ++i)
                plane[r][trirun::fp8_plane_byte(i)] = terms[static_cast<size_t>(r) * f.k + 32 * s + i].t[term];
            uint32_t b[32][2];
            for (int lane = 0; lane < 32; ++lane)
              for (int h = 0; h < 2; ++h) std::memcpy(&b[lane][h], &plane[lane / 4][16 * h + 4 * (lane % 4)], 4);
            for (int j = 0; j < 4; ++j) {
              uint32_t fa[32][4];
              for (int lane = 0; lane < 32; ++lane) {
                const int w = j / 2, rr = 2 * (j % 2);
                fa[lane][0] = words[0][lane][w][rr], fa[lane][1] = words[0][lane][w][rr + 1];
                fa[lane][2] = words[1][lane][w][rr], fa[lane][3] = words[1][lane][w][rr + 1];
              }
              mma_16832(fa, b, term == 2 ? last : __NV_E4M3, tmp[j], truncating);
            }
          }
        }
        for (int j = 0; j < 4; ++j)
          for (int lane = 0; lane < 32; ++lane)
            for (int e = 0; e < 4; ++e) {
              const int col = 64 * c + 16 * j + lane / 4 + (e >= 2 ? 8 : 0);
              const float scale = __half2float(__ushort_as_half(f.s[static_cast<size_t>(g0 / f.g) * f.n + col]));
              acc[j][lane][e] = std::fma(tmp[j][lane][e], scale, acc[j][lane][e]);
            }
      }
      for (int j = 0; j < 4; ++j)
        for (int lane = 0; lane < 32; ++lane)
          for (int e = 0; e < 4; ++e) {
            const int col = 64 * c + 16 * j + lane / 4 + (e >= 2 ? 8 : 0), row = 2 * (lane % 4) + e % 2;
            const float v = std::ldexp(acc[j][lane][e], -shift[row]);
            out[static_cast<size_t>(row) * f.n + col] = round_to_fp16 ? __half2float(__float2half(v)) : v;
          }
    }
    return out;
  };
  return Errors{rel(fp16),     rel(plan(__NV_E5M2, true)),  rel(plan(__NV_E4M3, true)),
                rel(fp16_f32), rel(plan(__NV_E5M2, false)), rel(plan(__NV_E4M3, false)),
                rel(plan(__NV_E5M2, true, true))};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fp8-terms-check <fixtures directory (trirun-layout)>\n");
    return 2;
  }
  const std::string dir = argv[1];
  check_terms();
  check_planes();
  const Fixture fixtures[] = {load(dir, "k128_n256_g-1", 128, 256, -1), load(dir, "k256_n256_g128", 256, 256, 128),
                              load(dir, "k512_n768_g128", 512, 768, 128)};
  for (const Fixture& f : fixtures)
    if (!f.B.empty()) check_decode(f);
  const unsigned seed = std::random_device{}();
  std::mt19937 rng(seed);
  std::printf("matmul: seed %u; relative Frobenius error of 8 rows against fp64, fp16 path / fp8 plan / e4m3 x 3: "
              "outputs in fp16 (as written); fp32 sums before that; the plan as written with truncating MMAs\n",
              seed);
  for (const Fixture& f : fixtures) {
    if (f.B.empty() || f.q.empty() || f.s.empty()) continue;
    for (const float outlier : {1.0f, 16.0f, 256.0f, 4096.0f}) {
      const Errors e = check_matmul(f, outlier, rng);
      std::printf("  %-15s outliers x%-5g %.3g / %.3g / %.3g;  %.3g / %.3g / %.3g;  %.3g\n", f.name.c_str(), outlier,
                  e.fp16, e.fp8, e.e4m3x3, e.fp16_f32, e.fp8_f32, e.e4m3x3_f32, e.fp8_truncating);
      // As written, the plan must be as good as the fp16 path to within the rounding of the fp16 output (a wrong
      // fragment or row order gives errors of order 1); its fp32 sums must stay far below that rounding.
      expect(e.fp8 <= 1.05 * e.fp16 + 1e-6, "the fp8 plan's outputs are less accurate than the fp16 path's");
      expect(e.fp8_f32 <= 1e-5, "the fp8 plan's fp32 sums are off by more than 1e-5");
      // Even if the MMAs truncate, the tiles' flushes (every 128 rows of k) keep it within the device check's 1e-3.
      expect(e.fp8_truncating <= 1e-3, "the fp8 plan with truncating MMAs exceeds the device check's 1e-3");
    }
  }
  std::printf("fp8-terms-check: %d failures\n", failures);
  return failures == 0 ? 0 : 1;
}

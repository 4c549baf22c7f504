// CPU check of the Hopper kernel's subnormal decode (trirun.cu: SubnormalScales), in
// exact arithmetic with fp16 decoded and encoded by hand: for every fp16 scale s with |s| < 2^-4 (subnormal,
// normal, either sign) and random packed words, both code shifts of a warp (0, 2), each register's
// mask-and-fma result must equal the weight (code - 1) x s that the kernel's default decode gives, code
// for code (the codes it picks are the default decode's: register 0 bits cs + {0, 16} of the word, 1
// cs + {8, 24}, 2 cs + {4, 20}, 3 cs + {12, 28}), zeros of either sign as equal; and s x 2^20 must be
// finite exactly while |s| < 2^-4 (the kernel's test of a scale, on its bits).
// Build and run (test/subnormal-decode.test.ts does): c++ -O2 -std=c++17 tools/subnormal-decode-check.cpp -o sd && ./sd
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>

// fp16 bits -> value (exact in double).
static double half_value(uint16_t h) {
  const int sign = h >> 15, exponent = (h >> 10) & 31, mantissa = h & 1023;
  double v = exponent == 0 ? std::ldexp(mantissa, -24)
             : exponent == 31 ? (mantissa ? NAN : INFINITY)
                              : std::ldexp(1024 + mantissa, exponent - 25);
  return sign ? -v : v;
}
// value -> fp16 bits, or -1 if the value is not exactly representable (or overflows).
static int exact_half(double v) {
  if (std::isnan(v)) return -1;
  const uint16_t sign = std::signbit(v) ? 0x8000 : 0;
  const double a = std::fabs(v);
  if (a == 0) return sign;
  if (a < std::ldexp(1.0, -14)) {  // subnormal: a multiple of 2^-24
    const double m = std::ldexp(a, 24);
    return m == std::floor(m) ? sign | static_cast<int>(m) : -1;
  }
  int e;
  const double f = std::frexp(a, &e);  // a = f 2^e, f in [0.5, 1)
  const double m = std::ldexp(f, 11);  // 1024..2047 if exact
  if (m != std::floor(m) || e - 1 > 15) return -1;
  return sign | ((e - 1 + 15) << 10) | (static_cast<int>(m) - 1024);
}
int main() {
  std::mt19937 rng(std::random_device{}());
  long checked = 0, failures = 0;
  // s x 2^20 is finite (fp16 max 65504) exactly for |s| < 2^-4: the largest such s is 2^-4 (1 - 2^-11).
  for (int bits = 0; bits < 0x7c00; ++bits) {
    const bool fits = bits < 0x2c00;  // the kernel's subnormal_scales_fit
    // (s x 2^20 is exact when finite: a power-of-two multiple of a finite fp16 value that is not subnormal.)
    const bool finite = exact_half(std::ldexp(half_value(static_cast<uint16_t>(bits)), 20)) >= 0;
    if (fits != finite) ++failures, printf("FAIL: s bits %04x: fits %d, s x 2^20 finite %d\n", bits, fits, finite);
  }
  const uint32_t mask4 = 0x00300030u, mask8 = 0x03000300u;
  for (int sign = 0; sign < 2; ++sign)
    for (int sbits = 0; sbits < 0x2c00; ++sbits) {
      const uint16_t s_bits = static_cast<uint16_t>(sbits | (sign << 15));
      const double s = half_value(s_bits);
      const double unit4 = half_value(static_cast<uint16_t>(exact_half(std::ldexp(s, 20))));
      const double unit8 = half_value(static_cast<uint16_t>(exact_half(std::ldexp(s, 16))));
      const double minus = -s;
      for (int trial = 0; trial < 4; ++trial) {
        const uint32_t q = rng();
        for (int cs = 0; cs <= 2; cs += 2) {
          const uint32_t x = q << (4 - cs), y = q >> (4 + cs);
          const uint32_t words[4] = {x & mask4, y & mask4, x & mask8, y & mask8};
          const double units[4] = {unit4, unit4, unit8, unit8};
          const int first_bit[4] = {0, 8, 4, 12};  // the default decode's codes, + cs (+ 16 for the high half)
          for (int r = 0; r < 4; ++r)
            for (int half = 0; half < 2; ++half) {
              const uint16_t v = static_cast<uint16_t>(words[r] >> (16 * half));
              const double got_exact = half_value(v) * units[r] + minus;  // an fma: exact, then rounded
              // Zeros compare equal whatever their sign: code 1 gives s - s = +0 here and sign(s) 0 in the
              // default decode, and a zero weight adds a zero product to fp32 sums that start at +0.
              const int got = exact_half(got_exact + 0.0);
              const int code = (q >> (cs + first_bit[r] + 16 * half)) & 3;
              const int want = exact_half((code - 1) * s + 0.0);
              ++checked;
              if (got < 0 || want < 0 || got != want) {
                if (++failures < 20)
                  printf("FAIL: s %04x q %08x cs %d register %d half %d: got %g, want %g\n", s_bits, q, cs, r, half,
                         got_exact, (code - 1) * s);
              }
            }
        }
      }
    }
  printf("subnormal-decode-check: %ld weights, %d scales, %ld failures\n", checked, 2 * 0x2c00, failures);
  return failures == 0 ? 0 : 1;
}

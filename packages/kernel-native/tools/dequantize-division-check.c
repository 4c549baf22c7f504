// Exhaustive check behind ops.cu's RowDivisor (the 8-bit row quantization's
// q / scale without a division per value): for every float scale in
// [2^-16, 1.3e7] and every integer q in [1, 128], with r = 1 / scale correctly
// rounded, y = q * r, e = fma(-scale, y, q), fma(e, r, y) equals the IEEE
// quotient q / scale (round to nearest). Negative q follow by symmetry (every
// step is odd in q). ~4e10 cases, ~20 s on 16 cores:
//   gcc -O2 -mfma -ffp-contract=off -fopenmp tools/dequantize-division-check.c -lm -o /tmp/ddc && /tmp/ddc
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
static float f_of(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t u_of(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
int main(void) {
  const float lo = 1.0f / 65536.0f, hi = 1.3e7f;
  const uint32_t ulo = u_of(lo), uhi = u_of(hi);
  long long bad = 0, checked = 0;
#pragma omp parallel for reduction(+ : bad, checked) schedule(dynamic, 65536)
  for (long long u = ulo; u <= (long long)uhi; ++u) {
    const float s = f_of((uint32_t)u);
    volatile float one = 1.0f;
    const float r = one / s;
    for (int qi = 1; qi <= 128; ++qi) {
      const float q = (float)qi;
      const float y = q * r;
      const float e = fmaf(-s, y, q);
      const float got = fmaf(e, r, y);
      const float want = q / s;
      checked++;
      if (got != want) {
        if (bad < 5) printf("mismatch s=%a q=%d got=%a want=%a\n", s, qi, got, want);
        bad++;
      }
    }
  }
  printf("checked %lld, mismatches %lld\n", checked, bad);
  return bad != 0;
}

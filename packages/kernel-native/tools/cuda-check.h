// CK(call): a CUDA runtime call that must succeed; on failure the standalone
// tools (kernel-probe, op-timing and the small probes) print where and why, and exit.
#pragma once
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

#define CK(x)                                                                        \
  do {                                                                               \
    cudaError_t e_ = (x);                                                            \
    if (e_ != cudaSuccess) {                                                         \
      fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorName(e_)); \
      exit(1);                                                                       \
    }                                                                                \
  } while (0)

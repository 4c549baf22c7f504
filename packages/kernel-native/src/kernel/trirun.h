// TriRun FP16 x INT2 matrix multiplication: the C interface of trirun.cu.
//
// C (m, n) fp16 = A (m, k) fp16 row-major  x  dequant(B, s)
//   B: int32 (k/16, n), the packed 2-bit weights of the reference layout
//   s: fp16 (k/g, n), the permuted scales (g = 128, or g = k: one group)
// fp32 accumulation on tensor cores. Base CUDA only: no framework headers, so
// other frameworks can take trirun.cu and this header as they are.
#pragma once

#include <cuda_runtime.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// Tile configuration. Zero (or negative) fields mean "choose automatically";
// trirun_matmul writes back what it used.
typedef struct TrirunConfig {
  int thread_k;   // k extent of a thread block's tile (thread_k x thread_n):
  int thread_n;   //   general kernel 128x128 or 64x256; small-batch 256x256 or 512x128 (m <= 32), 128x512 (m <= 16);
                  //   reported for the Hopper kernel: 128x128, or 128x192 for its experiment TRIRUN_EXP_HOPPER_WIDE=1
  int m_blocks;   // row blocks of A a block handles at once: 1..4 of 16 rows (general), 1, 2 or 4 of 8
                  //   (small-batch), 2..16 of 16 (Hopper: slices of 32, 64, 128, 144..224 or 256 rows)
  int stages;     // depth of the copy pipeline (cp.async stages or TMA mbarrier ring)
  int sms;        // thread blocks launched (striped over the SMs; or, in a clustered small-batch launch, a cluster
                  //   of blocks per column: TRIRUN_SMALL_CLUSTERS)
  int max_par;    // batch slices processed in parallel per launch (the Hopper kernel may use fewer, to keep
                  //   their activations in L2)
  int threads;    // threads per block
  int variant;    // kernel used: 0 = general, 1 = small-batch (m <= 32; swapped operands, fp32 group scales),
                  //   2 = Hopper (wgmma; sm_90, automatic from m = 33, and from m = 17 where n <= 4096 unless the
                  //   small-batch kernel would run in balanced clusters; TRIRUN_NARROW_HOPPER=0 keeps m <= 32 on the
                  //   small-batch kernel). On input, 2 asks for the Hopper
                  //   kernel at any m (TRIRUN_ERR_CONFIG where it cannot run); other values: automatic.
} TrirunConfig;

// Error codes (0 = success). trirun_error_string() names each one.
enum {
  TRIRUN_OK = 0,
  TRIRUN_ERR_SHAPE = 1,          // k % 128, n % 256 (or the chosen tile), m < 1
  TRIRUN_ERR_GROUPSIZE = 2,      // groupsize not in {128, k}
  TRIRUN_ERR_CONFIG = 3,         // no valid tile configuration for the request
  TRIRUN_ERR_WORKSPACE = 4,      // workspace too small
  TRIRUN_ERR_ALIGNMENT = 5,      // a pointer is not 16-byte aligned
  TRIRUN_ERR_CUDA = 6,           // a CUDA call failed: see *cuda_error
};

// Bytes of workspace (fp32 partial sums and column locks) the global reduction
// needs for a problem of width n; max_par is accepted for compatibility and
// does not change the size. The workspace must be zeroed once before the
// first call; every call leaves its locks zeroed again (its partial sums are
// written before they are read), so one buffer serves calls of every shape
// as long as it is large enough for each (and calls that share it are
// ordered, e.g. on one stream).
size_t trirun_workspace_bytes(int n, int max_par);

// Launches the kernel on `stream`. On TRIRUN_ERR_CUDA, *cuda_error holds the
// CUDA error (a launch error, or an error from a setup call).
// On sm_90, on any stream but the legacy default one, the small-batch kernel
// (m <= 32) is launched as a programmatic dependent of the kernel before it:
// it requests its first weights early and waits (griddepcontrol.wait) for
// that kernel before reading A or writing anything, so stream order holds.
// While a stream is being captured into a graph it also uses one block fewer
// than the SMs (unless config->sms is given). TRIRUN_PDL=0 turns both off.
// On compute capability 9.0 (built for sm_90a) the small-batch kernel is fed
// by TMA (384 threads); TRIRUN_SMALL_TMA=0 selects its cp.async version.
int trirun_matmul(const void* A, const void* B, const void* s, void* C, int m, int n, int k,
                  int groupsize, void* workspace, size_t workspace_bytes, int device,
                  cudaStream_t stream, TrirunConfig* config, cudaError_t* cuda_error);

const char* trirun_error_string(int code);

#ifdef __cplusplus
}
#endif

// The dispatcher of trirun_matmul checked on the CPU: no GPU, no kernel runs. trirun.cu is built here with
// TRIRUN_DISPATCH_RECORD, where device_attrs returns the attributes this program sets (an H100/H200-like
// sm_90 profile, the same with each TRIRUN_* switch off, an sm_80 and an sm_89 profile) and the launches are
// recorded instead of run. For every Llama / TriLM layer shape, group size and m = 1..1200 (and larger m up
// to 8192) it checks what every caller relies on:
//   - the call succeeds, and its launches cover rows 0..m-1 once each, in order;
//   - a Hopper launch only where the Hopper kernel exists, with a slice height that has a kernel instance,
//     no slice entirely past the rows, and at most kMaxPar slices;
//   - a small-batch launch has at most 32 rows in 8-row blocks that hold them, on one of its tiles;
//   - a general launch uses one of its tiles, which divide k and n, in at most kMaxPar 64-row slices;
//   - the config returned describes the first launch;
// and, for clustered small-batch launches (TRIRUN_SMALL_CLUSTERS), the choice of blocks per cluster and the
// kernel's split of a column among them (cluster_run) for every shape, tile and block count: each block has
// tiles, runs no longer than the striped schedule's, the column covered once in order, all clusters resident.
// Usage: dispatch-check [--table | --plans]   (--table: the launches of the model shapes at a few m, sm_90
// profile; --plans: the launches of each "k n m g" read from stdin, one line each, with the TRIRUN_* switches
// and experiments from the environment, read as the real build reads them: apply_env_switches)
// Build (CPU, a few seconds: no kernel is instantiated):
//   nvcc -std=c++17 -DTRIRUN_DISPATCH_RECORD -DTRIRUN_HAVE_SM90A -Isrc/kernel tools/dispatch-check.cu -o dispatch-check
#ifndef TRIRUN_DISPATCH_RECORD
#define TRIRUN_DISPATCH_RECORD
#endif
#include "trirun.cu"

#include <cstdio>
#include <string>
#include <vector>

using trirun::DeviceAttrs;
using trirun::g_record_attrs;
using trirun::g_recorded;
using trirun::RecordedLaunch;

namespace {

struct Profile {
  std::string name;
  DeviceAttrs attrs;
};

DeviceAttrs hopper_attrs() {
  DeviceAttrs a;
  a.sms = 132;
  a.smem_optin = 227 * 1024;
  a.pdl = true;
  a.hopper = true;
  a.small_tma = true;
  // Clusters of 2..8 one-block-per-SM blocks resident at once on an H100 SXM (cudaOccupancyMaxActiveClusters,
  // session 25): what the small-batch kernel's cluster rule sees there (only the TRIRUN_NARROW_CLUSTERS
  // rule asks it inside the dispatcher; the recorded launches themselves carry no cluster size).
  const int resident[] = {0, 0, 66, 39, 30, 22, 17, 15, 15};
  for (int size = 0; size <= trirun::kMaxCluster; ++size) a.record_resident[size] = resident[size];
  return a;
}

std::vector<Profile> profiles() {
  std::vector<Profile> p;
  p.push_back({"sm_90", hopper_attrs()});
  // Each switch of the sm_90 path off, as TRIRUN_*=0 would set it.
  const std::pair<const char*, bool DeviceAttrs::*> switches[] = {
      {"TRIRUN_HOPPER=0", &DeviceAttrs::hopper},          {"TRIRUN_SMALL_TMA=0", &DeviceAttrs::small_tma},
      {"TRIRUN_NARROW_HOPPER=0", &DeviceAttrs::narrow_hopper}, {"TRIRUN_NARROW_SLICES=0", &DeviceAttrs::narrow_slices},
      {"TRIRUN_SHORT_WIDE=0", &DeviceAttrs::short_wide},  {"TRIRUN_TAIL_SPLIT=0", &DeviceAttrs::tail_split},
      {"TRIRUN_SLICE32=0", &DeviceAttrs::slice32},        {"TRIRUN_SMALL_TAIL=0", &DeviceAttrs::small_tail},
      {"TRIRUN_MID_SLICES=0", &DeviceAttrs::mid_slices},  {"TRIRUN_MID_PAIRS=0", &DeviceAttrs::mid_pairs},
      {"TRIRUN_MID_TAILS=0", &DeviceAttrs::mid_tails},  {"TRIRUN_SHALLOW_HOPPER=0", &DeviceAttrs::shallow_hopper},
      {"TRIRUN_NARROW_32=0", &DeviceAttrs::narrow_32},   {"TRIRUN_NARROW_CLUSTERS=0", &DeviceAttrs::narrow_clusters},
      {"TRIRUN_HOPPER_SLOTS=0", &DeviceAttrs::hopper_slots}, {"TRIRUN_HOPPER_ALIGNED_RUNS=0", &DeviceAttrs::aligned_runs},
  };
  // The sm_90 profile with one setting changed, named as the variable that sets it.
  auto variant = [&](const std::string& name, auto&& set) {
    DeviceAttrs a = hopper_attrs();
    set(a);
    p.push_back({"sm_90 " + name, a});
  };
  for (const auto& sw : switches) variant(sw.first, [&](DeviceAttrs& a) { a.*sw.second = false; });
  for (int tiles : {16, 65, 97})
    variant("TRIRUN_WIDE_MIN_TILES=" + std::to_string(tiles), [&](DeviceAttrs& a) { a.wide_min_tiles = tiles; });
  variant("TRIRUN_MID_PAIRS_MIN_TILES=64", [](DeviceAttrs& a) { a.mid_pairs_min_tiles = 64; });
  variant("TRIRUN_NARROW_128=1", [](DeviceAttrs& a) { a.narrow_128 = true; });
  variant("TRIRUN_EXP_HOPPER_WIDE=1", [](DeviceAttrs& a) { a.hopper_wide = true; });
  for (int few : {0, 2})
    variant("TRIRUN_FEW_TILE_SLICES=" + std::to_string(few), [&](DeviceAttrs& a) { a.few_tile_slices = few; });
  variant("TRIRUN_BALANCE_LAUNCHES=0", [](DeviceAttrs& a) { a.balance_launches = false; });
  for (int mb : {8, 36})
    variant("TRIRUN_HOPPER_L2_MB=" + std::to_string(mb), [&](DeviceAttrs& a) { a.hopper_l2_mb = mb; });
  DeviceAttrs ampere;  // A100: 108 SMs, 163 KB
  ampere.sms = 108;
  ampere.smem_optin = 163 * 1024;
  p.push_back({"sm_80", ampere});
  DeviceAttrs ada;  // RTX 4090: 128 SMs, 99 KB
  ada.sms = 128;
  ada.smem_optin = 99 * 1024;
  p.push_back({"sm_89", ada});
  return p;
}

struct Shape {
  int k, n;
};

// (k, n) of the benchmark's model sets (Llama-2-70B, Llama-2-7B, TriLM 3.9B, BitNet b1.58 2B4T) and a few
// small layers.
const Shape kShapes[] = {{8192, 10240}, {8192, 8192},  {8192, 57344}, {28672, 8192}, {4096, 12288}, {4096, 4096},
                         {4096, 22016}, {11008, 4096}, {3072, 9216},  {3072, 3072},  {3072, 18432}, {9216, 3072},
                         {2560, 3840},  {2560, 2560},  {2560, 13824}, {6912, 2560},  {128, 256},    {256, 512},
                         {1024, 8192},  {2048, 3072}};

const int kHopperHeights[] = {32, 64, 128, 144, 160, 176, 192, 208, 224, 256};

char* const kA = reinterpret_cast<char*>(0x10000);  // never dereferenced: the launches are recorded

int g_failures = 0;
void fail(const std::string& where, const std::string& what) {
  if (++g_failures <= 30) std::printf("FAIL %s: %s\n", where.c_str(), what.c_str());
}

bool run(const DeviceAttrs& attrs, int m, int n, int k, int g, TrirunConfig* config, int* status) {
  g_record_attrs = attrs;
  g_recorded.clear();
  void* ws = reinterpret_cast<void*>(0x20000);
  const size_t ws_bytes = trirun_workspace_bytes(n, 16);
  cudaError_t cuda_error = cudaSuccess;
  *status = trirun_matmul(kA, reinterpret_cast<void*>(0x30000), reinterpret_cast<void*>(0x40000),
                          reinterpret_cast<void*>(0x50000), m, n, k, g, ws, ws_bytes, 0, nullptr, config, &cuda_error);
  return *status == TRIRUN_OK;
}

void check_call(const Profile& p, int m, const Shape& s, int g) {
  const std::string where = p.name + " k=" + std::to_string(s.k) + " n=" + std::to_string(s.n) + " g=" +
                            std::to_string(g) + " m=" + std::to_string(m);
  TrirunConfig config{};
  int status = 0;
  if (!run(p.attrs, m, s.n, s.k, g, &config, &status)) {
    fail(where, "status " + std::to_string(status) + " (" + trirun_error_string(status) + ")");
    return;
  }
  if (g_recorded.empty()) {
    fail(where, "no launch");
    return;
  }
  const bool grouped = g == 128 && s.k != 128;
  int next_row = 0;
  for (size_t i = 0; i < g_recorded.size(); ++i) {
    const RecordedLaunch& r = g_recorded[i];
    const std::string at = where + " launch " + std::to_string(i);
    const long long offset = static_cast<const char*>(r.A) - kA;
    if (offset % (2ll * s.k) != 0 || offset / (2ll * s.k) != next_row) {
      fail(at, "starts at row " + std::to_string(offset / (2.0 * s.k)) + ", expected " + std::to_string(next_row));
      return;
    }
    if (r.rows < 1) fail(at, "no rows");
    next_row += r.rows;
    if (r.grouped != grouped) fail(at, "group flag differs from the call's");
    if (r.blocks < 1 || r.blocks > p.attrs.sms) fail(at, "blocks " + std::to_string(r.blocks));
    if (r.kind == 2) {
      if (!p.attrs.hopper) fail(at, "Hopper launch without the Hopper kernel");
      bool known = false;
      for (int h : kHopperHeights) known = known || h == r.height;
      if (!known) {
        fail(at, "Hopper slice height " + std::to_string(r.height) + " has no kernel instance");
        continue;
      }
      const int slices = (r.rows + r.height - 1) / r.height;
      if (slices > trirun::kMaxPar) fail(at, std::to_string(slices) + " slices of " + std::to_string(r.height));
      // Several slices in one launch only while their activations fit the cap (their re-reads then come from L2).
      if (slices > 1 && static_cast<long long>(slices) * r.height * s.k * 2 > (static_cast<long long>(p.attrs.hopper_l2_mb) << 20))
        fail(at, std::to_string(slices) + " slices of " + std::to_string(r.height) + " rows exceed the activation cap");
      // (64-row slices on three consumer warpgroups, TRIRUN_EXP_HOPPER_WIDE=1, take 192-column tiles.)
      const int tile_n = p.attrs.hopper_wide && r.height == 64 ? 192 : 128;
      if (r.thread_k != 128 || r.thread_n != tile_n) fail(at, "Hopper tile");
    } else if (r.kind == 1) {
      if (r.rows > 32) fail(at, std::to_string(r.rows) + " rows on the small-batch kernel");
      if (r.height * 8 < r.rows) fail(at, "8-row blocks do not hold the rows");
      if (r.height != (r.rows <= 8 ? 1 : (r.rows <= 16 ? 2 : 4))) fail(at, "not the fewest 8-row blocks");
      if (!trirun::is_small_tile(r.thread_k, r.thread_n) || s.n % r.thread_n != 0)
        fail(at, "small tile " + std::to_string(r.thread_k) + " x " + std::to_string(r.thread_n));
    } else {
      if (!trirun::is_general_tile(r.thread_k, r.thread_n) || s.k % r.thread_k != 0 || s.n % r.thread_n != 0)
        fail(at, "general tile " + std::to_string(r.thread_k) + " x " + std::to_string(r.thread_n));
      const int slices = (r.rows + 63) / 64;
      if (slices > trirun::kMaxPar) fail(at, std::to_string(slices) + " slices of 64 rows");
      if (r.rows <= 64 && r.height * 16 < r.rows) fail(at, "16-row blocks do not hold the rows");
    }
  }
  if (next_row != m) fail(where, "launches cover " + std::to_string(next_row) + " rows");
  const RecordedLaunch& first = g_recorded[0];
  if (config.variant != first.kind || config.thread_k != first.thread_k || config.thread_n != first.thread_n)
    fail(where, "returned config does not describe the first launch");
  // Balanced launches never take more launches (so more reads of the weights) than the plain split.
  if (p.attrs.hopper && p.attrs.balance_launches) {
    const size_t balanced = g_recorded.size();
    DeviceAttrs plain = p.attrs;
    plain.balance_launches = false;
    TrirunConfig plain_config{};
    if (run(plain, m, s.n, s.k, g, &plain_config, &status) && g_recorded.size() < balanced)
      fail(where, std::to_string(balanced) + " balanced launches, " + std::to_string(g_recorded.size()) + " plain");
  }
}

void check_errors() {
  const DeviceAttrs a = hopper_attrs();
  TrirunConfig config{};
  int status = 0;
  const struct {
    int m, n, k, g, want;
  } cases[] = {{0, 256, 128, 128, TRIRUN_ERR_SHAPE},   {1, 256, 100, 128, TRIRUN_ERR_SHAPE},
               {1, 300, 128, 128, TRIRUN_ERR_SHAPE},   {1, 256, 256, 64, TRIRUN_ERR_GROUPSIZE},
               {1, 256, 256, 128, TRIRUN_OK},          {4096, 8192, 8192, -1, TRIRUN_OK}};
  for (const auto& c : cases) {
    config = TrirunConfig{};  // the config is also the request: start from an automatic one
    run(a, c.m, c.n, c.k, c.g, &config, &status);
    if (status != c.want)
      fail("errors m=" + std::to_string(c.m) + " n=" + std::to_string(c.n) + " k=" + std::to_string(c.k),
           "status " + std::to_string(status) + ", expected " + std::to_string(c.want));
  }
}

// One plan: the blocks per cluster chosen for a column of k_tiles x n_tiles tiles (0: no clusters) and the
// kernel's split of the first and last columns among them. resident(size): clusters of a size that fit at
// once; forced: TRIRUN_SMALL_CLUSTER_SIZE (0: the rule); slack: tiles a run may exceed the striped one by
// (TRIRUN_SMALL_CLUSTER_SLACK, push-exchange instances). Returns the size.
template <typename Resident>
int check_cluster_plan(const std::string& where, int k_tiles, int n_tiles, int blocks, Resident&& resident, int forced,
                       int slack) {
  const int size = trirun::cluster_size_for(k_tiles, n_tiles, blocks, resident, forced, slack);
  if (size == 0) return 0;
  if (resident(size) < n_tiles) fail(where, "clusters that do not fit at once");
  if (forced > 0 && size != forced) fail(where, "not the forced size");
  if (size < 2 || size > trirun::kMaxCluster) fail(where, "size " + std::to_string(size));
  if (n_tiles * size > blocks) fail(where, "more blocks than allowed");
  const int striped_run = trirun::ceil_div(k_tiles * n_tiles, blocks);
  for (int column : {0, n_tiles - 1}) {
    int next = column * k_tiles;
    for (int rank = 0; rank < size; ++rank) {
      const trirun::TileRun run = trirun::cluster_run(column, rank, size, k_tiles);
      if (run.first != next || run.end <= run.first) fail(where, "rank " + std::to_string(rank) + " run");
      // Forced sizes may run longer than the striped schedule; the rule's by at most the slack.
      if (forced == 0 && run.end - run.first > striped_run + slack)
        fail(where, "a run longer than the striped schedule's and the slack");
      next = run.end;
    }
    if (next != (column + 1) * k_tiles) fail(where, "the column is not covered");
  }
  return size;
}

// Every model shape, small-batch tile and block count, under three residency models (every SM in clusters;
// GPCs of 18 SMs that leave some over; none fit), with the rule and with each size forced.
void check_clusters(long long* cases, int* clustered_model_shapes) {
  const int tiles[][2] = {{512, 128}, {256, 256}, {128, 512}};  // thread_k x thread_n
  for (const Shape& s : kShapes)
    for (const auto& tile : tiles) {
      if (s.n % tile[1] != 0) continue;
      const int k_tiles = trirun::ceil_div(s.k, tile[0]), n_tiles = s.n / tile[1];
      for (int blocks : {131, 132, 114, 108, 78})
        for (int model = 0; model < 3; ++model)
          for (int forced = 0; forced <= trirun::kMaxCluster; forced += forced == 0 ? 2 : 1)
            for (int slack : {0, 2}) {
              auto resident = [&](int size) { return model == 0 ? blocks / size : (model == 1 ? 7 * (18 / size) : 0); };
              const std::string where = "clusters k=" + std::to_string(s.k) + " n=" + std::to_string(s.n) + " tile " +
                                        std::to_string(tile[0]) + "x" + std::to_string(tile[1]) + " blocks=" +
                                        std::to_string(blocks) + " model " + std::to_string(model) + " forced " +
                                        std::to_string(forced) + " slack " + std::to_string(slack);
              const int size = check_cluster_plan(where, k_tiles, n_tiles, blocks, resident, forced, slack);
              ++*cases;
              if (size > 0 && model == 2) fail(where, "clusters where none fit");
              if (size > 0 && model == 0 && forced == 0 && slack == 0 && blocks == 131 && tile[0] == 512)
                ++*clustered_model_shapes;
            }
    }
  // The H100's residency (hopper_attrs), 131 blocks, 512 x 128 tiles: the sizes session 32 measured best.
  const DeviceAttrs h100 = hopper_attrs();
  auto h100_resident = [&](int size) { return h100.record_resident[size]; };
  const struct {
    int k, n, slack, want;
  } measured[] = {{4096, 4096, 0, 0},  {4096, 4096, 2, 3}, {11008, 4096, 0, 0}, {11008, 4096, 2, 3},
                  {9216, 3072, 0, 0},  {9216, 3072, 2, 4}, {2560, 2560, 2, 5},  {8192, 8192, 2, 2},
                  {21760, 8192, 2, 2}, {4096, 12288, 2, 0}};
  for (const auto& c : measured) {
    const std::string where = "measured cluster size k=" + std::to_string(c.k) + " n=" + std::to_string(c.n) +
                              " slack " + std::to_string(c.slack);
    const int size = check_cluster_plan(where, trirun::ceil_div(c.k, 512), c.n / 128, 131, h100_resident, 0, c.slack);
    if (size != c.want) fail(where, "size " + std::to_string(size) + ", expected " + std::to_string(c.want));
    ++*cases;
  }
}

// The whole-column rule (whole_column_blocks): one block per column exactly where that run is longer than the
// striped one by 1..slack tiles and the columns fit the blocks; and the sizes session 32 measured (131 blocks,
// 512 x 128 tiles, slack 2).
void check_whole_columns(long long* cases) {
  for (int k_tiles = 1; k_tiles <= 64; ++k_tiles)
    for (int n_tiles = 1; n_tiles <= 300; ++n_tiles)
      for (int blocks : {131, 132, 78})
        for (int slack = 0; slack <= 4; ++slack) {
          const int got = trirun::whole_column_blocks(k_tiles, n_tiles, blocks, slack);
          const int striped = trirun::ceil_div(k_tiles * n_tiles, blocks);
          const bool want = slack > 0 && n_tiles <= blocks && k_tiles > striped && k_tiles - striped <= slack;
          if (got != (want ? n_tiles : 0))
            fail("whole columns k_tiles=" + std::to_string(k_tiles) + " n_tiles=" + std::to_string(n_tiles) +
                     " blocks=" + std::to_string(blocks) + " slack=" + std::to_string(slack),
                 "got " + std::to_string(got));
          ++*cases;
        }
  const struct {
    int k, n, want;
  } measured[] = {{4096, 12288, 96}, {3072, 9216, 72}, {4096, 22016, 0}, {4096, 4096, 0}, {8192, 24576, 0}};
  for (const auto& c : measured) {
    const int got = trirun::whole_column_blocks(trirun::ceil_div(c.k, 512), c.n / 128, 131, 2);
    if (got != c.want)
      fail("whole columns k=" + std::to_string(c.k) + " n=" + std::to_string(c.n),
           "blocks " + std::to_string(got) + ", expected " + std::to_string(c.want));
    ++*cases;
  }
}

// hopper_aligned_blocks: fewer blocks only where the kernel's run then grows by one tile and divides the
// column (so no block's run crosses a column end), and the blocks still cover every tile.
void check_aligned_runs(long long* cases) {
  for (int k_tiles = 1; k_tiles <= 100; ++k_tiles)
    for (int columns = 1; columns <= 64; ++columns)
      for (int blocks : {131, 132, 78}) {
        const int tiles = k_tiles * columns;
        const int got = trirun::hopper_aligned_blocks(k_tiles, columns, blocks);
        const int striped = trirun::hopper_run_tiles(k_tiles, tiles, blocks);
        const int run = trirun::hopper_run_tiles(k_tiles, tiles, got);
        const std::string where = "aligned runs k_tiles=" + std::to_string(k_tiles) + " columns=" +
                                  std::to_string(columns) + " blocks=" + std::to_string(blocks);
        const int even = trirun::ceil_div(tiles, blocks);
        const bool want = even < k_tiles && k_tiles % even != 0 && k_tiles % (even + 1) == 0;
        if (!want && got != blocks) fail(where, "blocks " + std::to_string(got));
        if (want && (got > blocks || run != striped + 1 || k_tiles % run != 0 || static_cast<long long>(run) * got < tiles))
          fail(where, "blocks " + std::to_string(got) + ", run " + std::to_string(run) + " against " + std::to_string(striped));
        ++*cases;
      }
  const struct {
    int k, n, want;
  } measured[] = {{3072, 3072, 96}, {4096, 4096, 132}, {9216, 3072, 132}, {11008, 4096, 132}, {2560, 2560, 132}};
  for (const auto& c : measured) {
    const int got = trirun::hopper_aligned_blocks(c.k / 128, c.n / 128, 132);
    if (got != c.want)
      fail("aligned runs k=" + std::to_string(c.k) + " n=" + std::to_string(c.n),
           "blocks " + std::to_string(got) + ", expected " + std::to_string(c.want));
    ++*cases;
  }
  // The dispatcher takes it for 33..64 rows of 3072 x 3072 (one 64-row slice with slots), not at 65 rows.
  for (int m : {33, 48, 64, 65}) {
    TrirunConfig config{};
    int status = 0;
    run(hopper_attrs(), m, 3072, 3072, 128, &config, &status);
    const int want = m <= 64 ? 96 : 132;
    if (g_recorded.empty() || g_recorded[0].blocks != want)
      fail("aligned runs 3072 x 3072 m=" + std::to_string(m),
           "blocks " + std::to_string(g_recorded.empty() ? 0 : g_recorded[0].blocks) + ", expected " + std::to_string(want));
    ++*cases;
  }
}

void table() {
  const DeviceAttrs a = hopper_attrs();
  const char* kinds[] = {"general", "small", "hopper"};
  for (const Shape& s : kShapes) {
    for (int m : {1, 16, 17, 32, 33, 64, 128, 129, 160, 192, 224, 256, 288, 384, 400, 448, 480, 512, 1000, 1024, 2048}) {
      TrirunConfig config{};
      int status = 0;
      run(a, m, s.n, s.k, 128, &config, &status);
      std::printf("k=%5d n=%5d m=%4d:", s.k, s.n, m);
      for (const RecordedLaunch& r : g_recorded) {
        if (r.kind == 2)
          std::printf("  %s %d rows (%d x %d)", kinds[r.kind], r.rows, (r.rows + r.height - 1) / r.height, r.height);
        else
          std::printf("  %s %d rows (%dx%d tile)", kinds[r.kind], r.rows, r.thread_k, r.thread_n);
      }
      std::printf("\n");
    }
  }
}

}  // namespace

// One line per call: "k n m g: kind rows (slices x height) ..." for (k, n, m) triples on stdin, sm_90.
void plans() {
  DeviceAttrs a = hopper_attrs();
  // The switches and experiments, as the real build reads them.
  trirun::apply_env_switches(a);
  int k = 0, n = 0, m = 0, g = 0;
  while (std::scanf("%d %d %d %d", &k, &n, &m, &g) == 4) {
    TrirunConfig config{};
    int status = 0;
    run(a, m, n, k, g, &config, &status);
    std::printf("%d %d %d %d:", k, n, m, g);
    if (status != TRIRUN_OK) std::printf(" error %d", status);
    for (const RecordedLaunch& r : g_recorded) {
      if (r.kind == 2)
        std::printf(" hopper %d (%dx%d)", r.rows, (r.rows + r.height - 1) / r.height, r.height);
      else
        std::printf(" %s %d (%dx%d)", r.kind == 1 ? "small" : "general", r.rows, r.thread_k, r.thread_n);
    }
    std::printf("\n");
  }
}

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "--table") {
    table();
    return 0;
  }
  if (argc > 1 && std::string(argv[1]) == "--plans") {
    plans();
    return 0;
  }
  long long calls = 0;
  std::vector<int> ms;
  for (int m = 1; m <= 1200; ++m) ms.push_back(m);
  for (int m : {1535, 1536, 2047, 2048, 2049, 3000, 4095, 4096, 4097, 8192}) ms.push_back(m);
  for (const Profile& p : profiles()) {
    for (const Shape& s : kShapes) {
      for (int g : {128, -1}) {
        for (int m : ms) {
          check_call(p, m, s, g);
          ++calls;
        }
      }
    }
  }
  check_errors();
  long long cluster_cases = 0;
  int clustered = 0;
  check_clusters(&cluster_cases, &clustered);
  long long whole_cases = 0;
  check_whole_columns(&whole_cases);
  long long aligned_cases = 0;
  check_aligned_runs(&aligned_cases);
  // The layers the clusters are for (BitNet's, TriLM's and Llama-2-7B's o and down projections...) take them.
  if (clustered < 8) fail("clusters", "only " + std::to_string(clustered) + " model shapes clustered");
  std::printf("dispatch-check: %lld whole-column plans, %lld aligned-run plans\n", whole_cases, aligned_cases);
  std::printf("dispatch-check: %lld calls over %zu device profiles, %lld cluster plans (%d shapes clustered), %d failures\n",
              calls, profiles().size(), cluster_cases, clustered, g_failures);
  return g_failures == 0 ? 0 : 1;
}

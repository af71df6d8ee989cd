#include "tensor/calibrate.h"

// See cpu_gemm.cpp: GCC 12's AVX-512 intrinsic headers trip -Wmaybe-uninitialized under -O3.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <vector>

#include "tensor/cpu_gemm.h"
#include "tensor/cpu_internal.h"

namespace seqit::tensor {

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// 12 independent accumulators: enough to cover FMA latency (4-5 cycles) x 2 pipes.
__attribute__((target("avx2,fma"))) double fma_chains_avx2(int64_t iterations) {
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(static_cast<float>(i) * 1e-3f);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  }
  __m256 s = acc[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, acc[i]);
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0];
}

__attribute__((target("avx512f"))) double fma_chains_avx512(int64_t iterations) {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i) * 1e-3f);
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  }
  __m512 s = acc[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, acc[i]);
  return _mm512_reduce_add_ps(s);
}

// The same with bf16 dot products (vdpbf16ps: 16 lanes, each adds two bf16 products: 64 FLOPs).
__attribute__((target("avx512f,avx512bf16"))) double bf16_dot_chains(int64_t iterations) {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i) * 1e-3f);
  const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(1e-3f));
  const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-4f), _mm512_set1_ps(1e-4f));
  for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
  }
  __m512 s = acc[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, acc[i]);
  return _mm512_reduce_add_ps(s);
}

double fma_chains_scalar(int64_t iterations) {
  float acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = static_cast<float>(i) * 1e-3f;
  for (int64_t it = 0; it < iterations; ++it)
    for (int i = 0; i < 12; ++i) acc[i] = acc[i] * 0.999999f + 1e-7f;
  double s = 0;
  for (float v : acc) s += v;
  return s;
}

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Runs `iterations` on every thread; returns wall seconds, and in *cpu the mean per-thread CPU
// time.
double run_chains(int threads, int64_t iterations, int width, double* cpu = nullptr) {
  double sink = 0, cpu_sum = 0;
  const double start = now();
#pragma omp parallel num_threads(threads) reduction(+ : sink, cpu_sum)
  {
    const double c0 = thread_cpu_seconds();
    if (width == 32)
      sink += bf16_dot_chains(iterations);
    else if (width == 16)
      sink += fma_chains_avx512(iterations);
    else if (width == 8)
      sink += fma_chains_avx2(iterations);
    else
      sink += fma_chains_scalar(iterations);
    cpu_sum += thread_cpu_seconds() - c0;
  }
  const double elapsed = now() - start;
  if (cpu) *cpu = cpu_sum / threads;
  volatile double keep = sink;  // the chains must not be optimised away
  (void)keep;
  return elapsed;
}

}  // namespace

FmaPeak measure_fma_peak(int threads, double seconds) {
  detail::apply_threads();
  threads = std::max(1, threads);
  const bool avx512 = __builtin_cpu_supports("avx512f");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const int width = avx512 ? 16 : (avx2 ? 8 : 1);
  // Calibrate the iteration count to the requested duration, then take the best of 3 runs.
  int64_t iterations = 1 << 16;
  while (run_chains(threads, iterations, width) < seconds / 8 && iterations < (int64_t{1} << 34))
    iterations *= 2;
  double best = 1e30, best_cpu = 1e30;
  for (int r = 0; r < 3; ++r) {
    double cpu = 0;
    best = std::min(best, run_chains(threads, iterations, width, &cpu));
    best_cpu = std::min(best_cpu, cpu);
  }
  FmaPeak peak;
  peak.gflops = static_cast<double>(iterations) * 12 * width * 2 * threads / best / 1e9;
  peak.gflops_cpu = static_cast<double>(iterations) * 12 * width * 2 * threads / best_cpu / 1e9;
  peak.isa = avx512 ? "avx512" : (avx2 ? "avx2" : "scalar");
  if (avx512 && avx2) {
    // On some cores (Zen 4) 512-bit FMAs are double-pumped: report whichever width is faster.
    double best2 = 1e30, best2_cpu = 1e30;
    for (int r = 0; r < 3; ++r) {
      double cpu = 0;
      best2 = std::min(best2, run_chains(threads, iterations, 8, &cpu));
      best2_cpu = std::min(best2_cpu, cpu);
    }
    const double g2 = static_cast<double>(iterations) * 12 * 8 * 2 * threads / best2 / 1e9;
    if (g2 > peak.gflops) {
      peak = FmaPeak{g2, static_cast<double>(iterations) * 12 * 8 * 2 * threads / best2_cpu / 1e9,
                     "avx2"};
    }
  }
  return peak;
}

FmaPeak measure_bf16_dot_peak(int threads, double seconds) {
  if (!__builtin_cpu_supports("avx512bf16")) return {};
  detail::apply_threads();
  threads = std::max(1, threads);
  int64_t iterations = 1 << 16;
  while (run_chains(threads, iterations, 32) < seconds / 8 && iterations < (int64_t{1} << 34))
    iterations *= 2;
  double best = 1e30, best_cpu = 1e30;
  for (int r = 0; r < 3; ++r) {
    double cpu = 0;
    best = std::min(best, run_chains(threads, iterations, 32, &cpu));
    best_cpu = std::min(best_cpu, cpu);
  }
  const double flops = static_cast<double>(iterations) * 12 * 64 * threads;
  return FmaPeak{flops / best / 1e9, flops / best_cpu / 1e9, "avx512_bf16"};
}

ReadBandwidth measure_read_bandwidth(int threads, size_t bytes, int repeats) {
  detail::apply_threads();
  threads = std::max(1, threads);
  const size_t n = bytes / sizeof(float) / 64 * 64;
  float* data = static_cast<float*>(std::aligned_alloc(64, n * sizeof(float)));
  if (!data) return {};
    // First touch from the threads that will read (page placement), and non-zero contents.
#pragma omp parallel for num_threads(threads) schedule(static)
  for (size_t i = 0; i < n; ++i) data[i] = static_cast<float>(i & 7);
  double best = 1e30, best_cpu = 1e30, sink = 0;
  for (int r = 0; r < repeats; ++r) {
    double cpu_sum = 0;
    const double start = now();
#pragma omp parallel num_threads(threads) reduction(+ : sink, cpu_sum)
    {
      const double c0 = thread_cpu_seconds();
      const size_t t = static_cast<size_t>(omp_get_thread_num()),
                   nt = static_cast<size_t>(omp_get_num_threads());
      const size_t b = n * t / nt / 64 * 64, e = n * (t + 1) / nt / 64 * 64;
      // The thread's range read as kStreams quarters side by side: one sequential stream per core
      // reaches only ~2/3 of the bandwidth several streams do on the Zen 3 VM this was measured on,
      // and the decoding kernels read several (4 panels at once with one row, see cpu_gemm.cpp).
      constexpr size_t kStreams = 4;
      const size_t len = (e - b) / kStreams / 16 * 16;
      float acc[kStreams][16] = {};
      for (size_t i = 0; i < len; i += 16)
        for (size_t s = 0; s < kStreams; ++s)
#pragma omp simd
          for (size_t j = 0; j < 16; ++j) acc[s][j] += data[b + s * len + i + j];
      for (size_t i = b + kStreams * len; i < e; ++i) acc[0][0] += data[i];
      for (const auto& row : acc)
        for (float v : row) sink += v;
      cpu_sum += thread_cpu_seconds() - c0;
    }
    best = std::min(best, now() - start);
    best_cpu = std::min(best_cpu, cpu_sum / threads);
  }
  volatile double keep = sink;
  (void)keep;
  std::free(data);
  const double total = static_cast<double>(n * sizeof(float));
  return ReadBandwidth{total / best / 1e9, total / best_cpu / 1e9};
}

std::string cpu_features() {
  std::string s;
  auto add = [&](const char* name, bool has) {
    if (!has) return;
    if (!s.empty()) s += ' ';
    s += name;
  };
  add("avx2", __builtin_cpu_supports("avx2"));
  add("fma", __builtin_cpu_supports("fma"));
  add("f16c", detail::cpu_has_f16c());
  add("avx512f", __builtin_cpu_supports("avx512f"));
  add("avx512bw", __builtin_cpu_supports("avx512bw"));
  add("avx512_bf16", __builtin_cpu_supports("avx512bf16"));
  add("amx_bf16", detail::cpu_has_amx_bf16());
  return s.empty() ? "scalar" : s;
}

bool cpu_has_bf16_arithmetic() {
  const bool cpu = __builtin_cpu_supports("avx512bf16") || detail::cpu_has_amx_bf16();
  return cpu && detail::onednn_has_fast_bf16();
}

std::string onednn_matmul_implementation() {
  return detail::onednn_f32_implementation();
}
bool onednn_native_bf16() {
  return detail::onednn_has_fast_bf16();
}

}  // namespace seqit::tensor

// Measures what this machine can do, at run time, so benchmarks report their numbers against the
// machine's own limits instead of assumed ones: FMA throughput (the compute peak of a GEMM) and
// memory read bandwidth (the limit of decoding, which streams every weight once per token).
#pragma once

#include <cstddef>
#include <string>

namespace seqit::tensor {

struct FmaPeak {
  double gflops = 0;  // f32 FLOP/s (an FMA counts 2) summed over the threads, by wall time
  // The same work divided by each thread's own CPU time: what the cores deliver when they run,
  // which stays meaningful while other processes share the machine (wall time then measures the
  // share).
  double gflops_cpu = 0;
  std::string isa;  // "avx512", "avx2" or "scalar": the widest vectors this CPU runs
};
// Runs independent FMA chains (no memory traffic) on `threads` threads for about `seconds`.
FmaPeak measure_fma_peak(int threads, double seconds = 0.3);
// The bf16 compute peak the same way: AVX512_BF16 dot products (each counts 2 multiply-adds per
// f32 lane), isa "avx512_bf16"; all zero on a CPU without them (AMX is not probed).
FmaPeak measure_bf16_dot_peak(int threads, double seconds = 0.3);

// Sums `bytes` of memory (far larger than the caches) on `threads` threads: the best of `repeats`
// passes, in GB/s (1e9 bytes per second), by wall time and by the threads' CPU time.
struct ReadBandwidth {
  double gbs = 0;
  double gbs_cpu = 0;
};
ReadBandwidth measure_read_bandwidth(int threads, size_t bytes = size_t{512} << 20,
                                     int repeats = 3);

// CPU features relevant to the kernels, e.g. "avx2 fma f16c" or "avx2 fma f16c avx512f
// avx512_bf16".
std::string cpu_features();
// Whether this CPU has bf16 arithmetic (AVX512_BF16's dot products or AMX-BF16) and oneDNN runs
// bf16 matmuls with it: where bf16 compute is worth choosing (the trainer's compute_dtype auto).
// Elsewhere a bf16 GEMM still computes the same rounding, through f32 GEMMs (slower).
bool cpu_has_bf16_arithmetic();
// The oneDNN implementation chosen for an f32 matmul, and whether bf16 runs natively (not "ref").
std::string onednn_matmul_implementation();
bool onednn_native_bf16();

}  // namespace seqit::tensor

// bench_tensor_gemm: GEMM GFLOP/s on the Llama block shapes (hidden 1024, 16 heads, 4 kv heads of
// 64, ffn 2816, T = 512) against this machine's FMA peak measured in the same run; decode GEMV GB/s
// against the measured memory read bandwidth.
//   bench_tensor_gemm [threads=2]
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench_models.h"
#include "bench_util.h"
#include "tensor/calibrate.h"
#include "tensor/ops.h"
#include "tensor/threading.h"

using namespace seqit;
using namespace seqit::tensor;

namespace {

struct Shape3 {
  const char* name;
  int64_t tokens, in, out;
};

}  // namespace

int main(int argc, char** argv) {
  seqit::tensor::establish_openmp_wait_policy(argv);  // as the seqit executable does
  if (argc > 1 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h")) {
    std::printf(
        "usage: bench_tensor_gemm [THREADS]\n"
        "GEMM rates of the Llama 155.7M projections (forward and both backward passes, f32 and "
        "bf16)\n"
        "against this machine's FMA peak, then decode GEMV rates (1 and 16 rows, plain and packed\n"
        "weights) against its read bandwidth. THREADS defaults to 2.\n");
    return 0;
  }
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  set_num_threads(threads);
  std::printf(
      "# bench_tensor_gemm: %d threads; cpu: %s; oneDNN f32 matmul: %s; oneDNN native bf16: %s\n",
      threads, cpu_features().c_str(), onednn_matmul_implementation().c_str(),
      onednn_native_bf16() ? "yes" : "no");
  std::printf("# OpenMP wait: %s; load average before: %s\n", openmp_wait_policy(),
              bench::load_average().c_str());
  const FmaPeak peak = measure_fma_peak(threads);
  const FmaPeak peak1 = measure_fma_peak(1);
  std::printf(
      "# measured FMA peak (f32, %s): %.1f GFLOP/s on %d threads by wall time, %.1f by CPU time; "
      "1 thread: %.1f wall, %.1f CPU\n",
      peak.isa.c_str(), peak.gflops, threads, peak.gflops_cpu, peak1.gflops, peak1.gflops_cpu);
  std::printf(
      "# 'wall' = FLOPs / elapsed time; 'cpu' = FLOPs / (process CPU time / threads): the speed "
      "with the "
      "cores to ourselves,\n# compared with the CPU-time peak. With other processes running, wall "
      "figures measure our share of the machine.\n\n");

  const int64_t t = 512, c = 1024, kv = 256, f = 2816;
  const std::vector<Shape3> shapes{
      {"q / o proj", t, c, c}, {"k / v proj", t, c, kv}, {"gate / up", t, c, f}, {"down", t, f, c}};
  std::printf(
      "| shape [T x in -> out] | pass | f32 wall | f32 cpu | f32 %% of peak | bf16 wall | bf16 cpu "
      "| "
      "bf16 %% of f32 peak |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  double total_flops = 0, total_s[2] = {0, 0}, total_cpu[2] = {0, 0};
  for (const Shape3& s : shapes) {
    const double flops = 2.0 * static_cast<double>(s.tokens * s.in * s.out);
    for (const char* pass : {"fwd y=x.Wt", "bwd dx=dy.W", "bwd dW+=dyt.x"}) {
      double wall[2] = {0, 0}, cpu[2] = {0, 0};
      for (int b = 0; b < 2; ++b) {
        const DType dt = b == 0 ? DType::f32 : DType::bf16;
        const Tensor x = bench::random_tensor({s.tokens, s.in}, dt, 1.0f, 1);
        const Tensor w = bench::random_tensor({s.out, s.in}, dt, 0.05f, 2);
        const Tensor dy = bench::random_tensor({s.tokens, s.out}, dt, 1.0f, 3);
        Tensor y = Tensor::empty({s.tokens, s.out}, dt);
        Tensor dx = Tensor::zeros({s.tokens, s.in}, dt);
        Tensor dw = Tensor::zeros({s.out, s.in}, DType::f32);
        std::function<void()> fn;
        if (pass[0] == 'f')
          fn = [&] { linear_forward(y, x, w); };
        else if (pass[5] == 'x')
          fn = [&] { linear_backward(dx, Tensor(), Tensor(), dy, x, w); };
        else
          fn = [&] { linear_backward(Tensor(), dw, Tensor(), dy, x, w); };
        const bench::Timing tm = bench::time_it(fn, threads, 0.4);
        wall[b] = flops / tm.median / 1e9;
        cpu[b] = flops / tm.cpu_median / 1e9;
        total_s[b] += tm.median;
        total_cpu[b] += tm.cpu_median;
      }
      total_flops += flops;
      std::printf(
          "| %s [%lld x %lld -> %lld] | %s | %.1f | %.1f | %.0f%% | %.1f | %.1f | %.0f%% |\n",
          s.name, static_cast<long long>(s.tokens), static_cast<long long>(s.in),
          static_cast<long long>(s.out), pass, wall[0], cpu[0], 100 * cpu[0] / peak.gflops_cpu,
          wall[1], cpu[1], 100 * cpu[1] / peak.gflops_cpu);
    }
  }
  const double f32_cpu = total_flops / total_cpu[0] / 1e9,
               bf16_cpu = total_flops / total_cpu[1] / 1e9;
  std::printf("| all 12 (time-weighted) | | %.1f | %.1f | %.0f%% | %.1f | %.1f | %.0f%% |\n\n",
              total_flops / total_s[0] / 1e9, f32_cpu, 100 * f32_cpu / peak.gflops_cpu,
              total_flops / total_s[1] / 1e9, bf16_cpu, 100 * bf16_cpu / peak.gflops_cpu);

  // ---- decode GEMV: one token through every weight matrix of an 8-layer Llama 155.7M-shaped stack
  // ----
  const ReadBandwidth bw = measure_read_bandwidth(threads);
  const ReadBandwidth bw1 = measure_read_bandwidth(1);
  std::printf(
      "# measured memory read bandwidth: %.1f GB/s wall (%.1f by CPU time) on %d threads; 1 "
      "thread: %.1f wall "
      "(%.1f CPU)\n",
      bw.gbs, bw.gbs_cpu, threads, bw1.gbs, bw1.gbs_cpu);
  // Plain row-major weights (what training uses) next to the same weights packed into decoding
  // panels (what seqit generate / serve load), for 1 row (single-sequence decode: bandwidth-bound)
  // and 16 rows (batched decode: 32 flops per weight element loaded, compute-bound); each packed
  // row is timed right after its plain row, so the ratio holds even on a noisy machine.
  std::printf(
      "| decode (8 layers x 7 matrices) | layout | rows | weight bytes | ms/step wall | GB/s wall "
      "| "
      "%% of read bw | GFLOP/s | %% of FMA peak | packed / plain |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
  const std::vector<std::pair<int64_t, int64_t>> mats{{c, c}, {kv, c}, {kv, c}, {c, c},
                                                      {f, c}, {f, c},  {c, f}};
  for (DType dt : {DType::f32, DType::bf16, DType::f16}) {
    std::vector<Tensor> weights;
    std::vector<PackedWeight> packed;
    double bytes = 0, params = 0;
    for (int layer = 0; layer < 8; ++layer)
      for (const auto& [out, in] : mats) {
        weights.push_back(
            bench::random_tensor({out, in}, dt, 0.05f, static_cast<uint32_t>(layer * 7 + out)));
        packed.push_back(pack_weight(weights.back()));
        bytes += static_cast<double>(weights.back().nbytes());
        params += static_cast<double>(out * in);
      }
    for (int64_t rows : {1, 16}) {
      const Tensor x = bench::random_tensor({rows, f}, DType::f32, 1.0f, 9);
      Tensor y = Tensor::empty({rows, f}, DType::f32);
      double plain_s = 0;
      for (bool use_packed : {false, true}) {
        const bench::Timing tm = bench::time_it(
            [&] {
              for (size_t m = 0; m < weights.size(); ++m) {
                const Tensor& w = weights[m];
                const Tensor ym = y.narrow(1, 0, w.size(0)), xm = x.narrow(1, 0, w.size(1));
                if (use_packed)
                  linear_forward(ym, xm, packed[m]);
                else
                  linear_forward(ym, xm, w);
              }
            },
            threads, 1.0);
        if (!use_packed) plain_s = tm.median;
        const double gbs = bytes / tm.median / 1e9, gflops = 2 * params * rows / tm.median / 1e9;
        std::printf(
            "| %s | %s | %lld | %.0f MB | %.2f | %.1f | %.0f%% | %.1f | %.0f%% | %s |\n",
            std::string(dtype_name(dt)).c_str(), use_packed ? "packed" : "plain",
            static_cast<long long>(rows), bytes / 1e6, tm.median * 1e3, gbs, 100 * gbs / bw.gbs,
            gflops, 100 * gflops / peak.gflops,
            use_packed ? (std::to_string(plain_s / tm.median).substr(0, 4) + "x").c_str() : "");
      }
    }
  }
  std::printf("\n# load average after: %s\n", bench::load_average().c_str());
  return 0;
}

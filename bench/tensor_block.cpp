// bench_tensor_block: one Llama decoder block (hidden 1024, 16 heads, 4 kv heads of 64, ffn 2816),
// T = 512 tokens, forward + backward composed from the tensor ops, f32 and bf16 (bf16 weights and
// activations, f32 weight gradients). Prints tokens/s, the share of each op family, peak memory,
// and the GEMM FLOP rate against this machine's FMA peak measured in the same run.
//   bench_tensor_block [threads=2] [seconds=4]
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
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

constexpr int64_t kT = 512, kC = 1024, kHq = 16, kHkv = 4, kD = 64, kF = 2816;

// Per-op-family wall time of one step.
struct Clock {
  std::map<std::string, double> seconds;
  template <typename F>
  void operator()(const char* family, F&& fn) {
    const double t0 = bench::now_seconds();
    fn();
    seconds[family] += bench::now_seconds() - t0;
  }
};

struct Block {
  DType dt;
  // parameters (dt) and their gradients (f32)
  Tensor norm1, wqkv, wo, norm2, wgu, wd;
  Tensor gnorm1, gwqkv, gwo, gnorm2, ggu, gwd;
  // activations (dt; rstd and lse f32)
  Tensor x, h1, qkv, a, lse, x2, h2, gu, sw, y, rstd1, rstd2;
  // activation gradients (dt)
  Tensor dy, dsw, dgu, dh2, dx2, da, dqkv, dh1, dx;
  Tensor positions;
  RopeConfig rope;

  explicit Block(DType dtype) : dt(dtype) {
    const int64_t qkv_width = (kHq + 2 * kHkv) * kD;
    norm1 = Tensor::full({kC}, 1.0, DType::f32);
    norm2 = Tensor::full({kC}, 1.0, DType::f32);
    // q, k, v and gate, up as fused projections: one GEMM each, column blocks are views.
    wqkv = bench::random_tensor({qkv_width, kC}, dt, 0.06f, 1);
    wo = bench::random_tensor({kC, kHq * kD}, dt, 0.06f, 2);
    wgu = bench::random_tensor({2 * kF, kC}, dt, 0.06f, 3);
    wd = bench::random_tensor({kC, kF}, dt, 0.04f, 4);
    for (Tensor* g : {&gnorm1, &gnorm2}) *g = Tensor::zeros({kC}, DType::f32);
    gwqkv = Tensor::zeros(wqkv.shape(), DType::f32);
    gwo = Tensor::zeros(wo.shape(), DType::f32);
    ggu = Tensor::zeros(wgu.shape(), DType::f32);
    gwd = Tensor::zeros(wd.shape(), DType::f32);
    x = bench::random_tensor({1, kT, kC}, dt, 2.0f, 5);
    for (Tensor* t : {&h1, &x2, &h2, &y, &dh2, &dx2, &dh1, &dx})
      *t = Tensor::zeros({1, kT, kC}, dt);
    qkv = Tensor::zeros({1, kT, qkv_width}, dt);
    dqkv = Tensor::zeros({1, kT, qkv_width}, dt);
    a = Tensor::zeros({1, kT, kHq, kD}, dt);
    da = Tensor::zeros({1, kT, kHq, kD}, dt);
    lse = Tensor::zeros({1, kHq, kT}, DType::f32);
    gu = Tensor::zeros({1, kT, 2 * kF}, dt);
    dgu = Tensor::zeros({1, kT, 2 * kF}, dt);
    sw = Tensor::zeros({1, kT, kF}, dt);
    dsw = Tensor::zeros({1, kT, kF}, dt);
    rstd1 = Tensor::zeros({kT}, DType::f32);
    rstd2 = Tensor::zeros({kT}, DType::f32);
    dy = bench::random_tensor({1, kT, kC}, dt, 1.0f, 6);
    std::vector<int32_t> pos(kT);
    for (int64_t t = 0; t < kT; ++t) pos[static_cast<size_t>(t)] = static_cast<int32_t>(t);
    positions = Tensor::from_ints(pos, {1, kT});
    rope.head_dim = kD;
    rope.theta = 10000.0;
  }

  Tensor q() const { return qkv.narrow(2, 0, kHq * kD).view({1, kT, kHq, kD}); }
  Tensor k() const { return qkv.narrow(2, kHq * kD, kHkv * kD).view({1, kT, kHkv, kD}); }
  Tensor v() const { return qkv.narrow(2, (kHq + kHkv) * kD, kHkv * kD).view({1, kT, kHkv, kD}); }
  Tensor dq() const { return dqkv.narrow(2, 0, kHq * kD).view({1, kT, kHq, kD}); }
  Tensor dk() const { return dqkv.narrow(2, kHq * kD, kHkv * kD).view({1, kT, kHkv, kD}); }
  Tensor dv() const { return dqkv.narrow(2, (kHq + kHkv) * kD, kHkv * kD).view({1, kT, kHkv, kD}); }

  void forward(Clock& clock) {
    clock("norm/rope/swiglu/add", [&] { rmsnorm_forward(h1, rstd1, x, norm1, 1e-5f); });
    clock("matmul", [&] { linear_forward(qkv, h1, wqkv); });
    clock("norm/rope/swiglu/add", [&] {
      rope_forward(q(), q(), positions, rope);
      rope_forward(k(), k(), positions, rope);
    });
    clock("attention", [&] { attention_forward(a, lse, q(), k(), v()); });
    clock("matmul", [&] { linear_forward(x2, a.view({1, kT, kHq * kD}), wo); });
    clock("norm/rope/swiglu/add", [&] {
      add(x2, x2, x);
      rmsnorm_forward(h2, rstd2, x2, norm2, 1e-5f);
    });
    clock("matmul", [&] { linear_forward(gu, h2, wgu); });
    clock("norm/rope/swiglu/add",
          [&] { swiglu_forward(sw, gu.narrow(2, 0, kF), gu.narrow(2, kF, kF)); });
    clock("matmul", [&] { linear_forward(y, sw, wd); });
    clock("norm/rope/swiglu/add", [&] { add(y, y, x2); });
  }

  void backward(Clock& clock) {
    clock("zero grads", [&] {
      for (Tensor* t : {&dsw, &dgu, &dh2, &dx2, &da, &dqkv, &dh1, &dx}) t->zero();
    });
    clock("matmul", [&] { linear_backward(dsw, gwd, Tensor(), dy, sw, wd); });
    clock("norm/rope/swiglu/add", [&] {
      swiglu_backward(dgu.narrow(2, 0, kF), dgu.narrow(2, kF, kF), dsw, gu.narrow(2, 0, kF),
                      gu.narrow(2, kF, kF));
    });
    clock("matmul", [&] { linear_backward(dh2, ggu, Tensor(), dgu, h2, wgu); });
    clock("norm/rope/swiglu/add", [&] {
      rmsnorm_backward(dx2, gnorm2, dh2, x2, norm2, rstd2);
      add_inplace(dx2, dy);
    });
    clock("matmul", [&] {
      linear_backward(da.view({1, kT, kHq * kD}), gwo, Tensor(), dx2, a.view({1, kT, kHq * kD}),
                      wo);
    });
    clock("attention", [&] { attention_backward(dq(), dk(), dv(), da, q(), k(), v(), a, lse); });
    clock("norm/rope/swiglu/add", [&] {
      rope_backward(dq(), dq(), positions, rope);
      rope_backward(dk(), dk(), positions, rope);
    });
    clock("matmul", [&] { linear_backward(dh1, gwqkv, Tensor(), dqkv, h1, wqkv); });
    clock("norm/rope/swiglu/add", [&] {
      rmsnorm_backward(dx, gnorm1, dh1, x, norm1, rstd1);
      add_inplace(dx, dx2);
    });
  }
};

// Runs `steps` of fwd+bwd for one dtype and prints its table row. Each dtype runs in its own
// process (the parent re-executes itself with the dtype as an argument) so peak RSS is that dtype's
// alone.
int run_one(DType dt, int threads, double seconds, double peak_cpu) {
  const double linear_params =
      static_cast<double>((kHq + 2 * kHkv) * kD * kC + kC * kHq * kD + 3 * kF * kC);
  const double gemm_flops = 6.0 * kT * linear_params;
  // Attention (causal: half of T² pairs): forward 2 matmuls, backward 5 (one recomputes QKᵀ).
  const double attn_flops = 7.0 * 2.0 * kHq * kD * (kT * (kT + 1) / 2.0);
  const double rss_start = bench::current_rss_mb();
  Block block(dt);
  Clock warm;
  block.forward(warm);
  block.backward(warm);
  std::vector<double> wall, cpu;
  Clock clock;
  const double start = bench::now_seconds();
  while (wall.size() < 3 || bench::now_seconds() - start < seconds) {
    const double t0 = bench::now_seconds(), c0 = bench::process_cpu_seconds();
    block.forward(clock);
    block.backward(clock);
    wall.push_back(bench::now_seconds() - t0);
    cpu.push_back((bench::process_cpu_seconds() - c0) / threads);
  }
  std::sort(wall.begin(), wall.end());
  std::sort(cpu.begin(), cpu.end());
  const double step = wall[wall.size() / 2], step_cpu = cpu[cpu.size() / 2];
  double total = 0;
  for (const auto& [name, sec] : clock.seconds) total += sec;
  auto share = [&](const char* name) { return 100.0 * clock.seconds[name] / total; };
  const double gflops_cpu = (gemm_flops + attn_flops) / step_cpu / 1e9;
  std::printf(
      "| %s | %.0f | %.0f | %s | %.0f | %.1f | %.0f%% | %.0f%% | %.0f%% | %.0f%% | %.0f | %.0f |\n",
      std::string(dtype_name(dt)).c_str(), kT / step, kT / step_cpu,
      dt == DType::f32 ? "2400" : "4500", step_cpu * 1e3, gflops_cpu, 100 * gflops_cpu / peak_cpu,
      share("matmul"), share("attention"), share("norm/rope/swiglu/add") + share("zero grads"),
      bench::peak_rss_mb(), rss_start);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  seqit::tensor::establish_openmp_wait_policy(argv);  // as the seqit executable does
  if (argc > 1 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h")) {
    std::printf(
        "usage: bench_tensor_block [THREADS] [SECONDS]\n"
        "One Llama decoder block (hidden 1024, 16/4 heads of 64, ffn 2816), 512 tokens, forward +\n"
        "backward in f32 and bf16: tokens/s, the share of each op family, peak memory, GEMM rate "
        "vs\n"
        "the FMA peak. THREADS defaults to 2, SECONDS (per dtype) to 4.\n");
    return 0;
  }
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const double seconds = argc > 2 ? std::atof(argv[2]) : 4.0;
  set_num_threads(threads);
  if (argc > 4) {  // child: bench_tensor_block <threads> <seconds> <dtype> <peak_cpu>
    return run_one(std::string(argv[3]) == "bf16" ? DType::bf16 : DType::f32, threads, seconds,
                   std::atof(argv[4]));
  }
  std::printf(
      "# bench_tensor_block: Llama block hidden %lld, %lld heads, %lld kv heads x %lld, ffn %lld, "
      "T=%lld; "
      "%d threads; fwd+bwd\n",
      static_cast<long long>(kC), static_cast<long long>(kHq), static_cast<long long>(kHkv),
      static_cast<long long>(kD), static_cast<long long>(kF), static_cast<long long>(kT), threads);
  std::printf("# cpu: %s; oneDNN f32 matmul: %s; native bf16 matmul: %s; OpenMP wait: %s\n",
              cpu_features().c_str(), onednn_matmul_implementation().c_str(),
              onednn_native_bf16() ? "yes" : "no (bf16 operands converted to f32 block by block)",
              openmp_wait_policy());
  std::printf("# load average before: %s\n", bench::load_average().c_str());
  const FmaPeak peak = measure_fma_peak(threads);
  std::printf(
      "# measured FMA peak: %.1f GFLOP/s by wall time, %.1f by CPU time (f32, %s, %d threads)\n",
      peak.gflops, peak.gflops_cpu, peak.isa.c_str(), threads);
  std::printf(
      "# tok/s wall = T / elapsed; tok/s cpu = T / (process CPU time / threads), the estimate for "
      "unshared "
      "cores.\n# GFLOP/s and %% of peak use CPU time against the CPU-time peak. Each dtype runs in "
      "a fresh "
      "process; RSS includes ~%s MB of runtime.\n\n",
      "8");
  std::printf(
      "| dtype | tok/s wall | tok/s cpu | target tok/s | step ms (cpu) | GFLOP/s (cpu) | %% of FMA "
      "peak | "
      "matmul %% | attention %% | elementwise %% | peak RSS MB (target 200) | RSS at start MB |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  std::fflush(stdout);
  char self[4096] = {};
  if (readlink("/proc/self/exe", self, sizeof(self) - 1) <= 0) {
    std::fprintf(stderr, "bench_tensor_block: cannot find its own executable\n");
    return 1;
  }
  for (const char* dt : {"f32", "bf16"}) {
    const std::string cmd = std::string(self) + " " + std::to_string(threads) + " " +
                            std::to_string(seconds) + " " + dt + " " +
                            std::to_string(peak.gflops_cpu);
    if (std::system(cmd.c_str()) != 0) {
      std::fprintf(stderr, "bench_tensor_block: the %s run failed\n", dt);
      return 1;
    }
  }
  std::printf("\n# load average after: %s\n", bench::load_average().c_str());
  return 0;
}

// Training speed and memory (issue 13): one optimiser step (forward + backward + global-norm clip +
// AdamW, train::Trainer::step) of the 155.7M Llama of bench_model (hidden 1024, 8 layers, 16/4
// heads, ffn 2816, vocab 32000, untied head; random weights), one sequence of 1024 tokens, next to
// PyTorch eager doing the same step in the same run (bench/torch_train_reference.py: Debian's
// torch 1.13 on OpenBLAS, f32 and bf16 autocast, its best reported), against this machine's FMA
// peak measured by the library's probe in the same run.
//
// Rows: seqit full fine-tuning and PyTorch (f32, bf16 autocast); seqit LoRA (r 16 on all seven
// projections); full fine-tuning at 2048 tokens with and without activation checkpointing.
// Every configuration runs in its own process (the bench re-executes itself with --child), so each
// peak RSS is that configuration's alone.
//
// FLOPs per token (MFU): 6·P_matmul + 6·L·Hq·D·(T+1), where P_matmul is every matrix a token is
// multiplied by (the blocks' q k v o gate up down and the output head; not the embedding, a
// lookup), and the second term is causal attention: QKᵀ and P·V, 2·2·Hq·D FLOPs per (query, key)
// pair, T(T+1)/2 pairs per layer, times 3 for forward + backward (the flash-style backward's
// recomputation of QKᵀ is not counted: MFU counts the model's FLOPs, not the implementation's).
//
// --mpi (issue 21): data-parallel training, the same global batch of 2 sequences of 1024 tokens
// per step as 1 process x 2 threads (2 micro-batches) and as 2 MPI ranks x 1 thread (one each,
// gradients summed during the backward pass; and with that overlap switched off), with each
// process's peak RSS and the gradient-sum time the backward pass did not hide.
//
// Usage: bench_train [--threads N] [--steps N] [--quick] [--no-torch] [--mpi] [--help]
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "bench_models.h"
#include "bench_util.h"
#include "dist/communicator.h"
#include "model/llama.h"
#include "model/random_weights.h"
#include "model/train_network.h"
#include "tensor/calibrate.h"
#include "tensor/threading.h"
#include "train/trainer.h"

using namespace seqit;
using nlohmann::json;

namespace {

// llama.cpp's finetune on this shape, 2-core AVX-512 (docs/ENGINE_NOTES.md): quoted, not measured.
constexpr const char* kLlamaCppAnchor = "~52-60 tok/s";

struct Mode {
  // full, lora (f32 base) or lora-bf16 (bf16 base); a "+bf16" suffix computes in bf16
  // (TrainOptions::compute), e.g. full+bf16.
  std::string name;
  int64_t seq = 1024;
  bool checkpoint = false;
};

// FLOPs of one token's training step (see the header comment).
double flops_per_token(const model::ModelConfig& c, int64_t T) {
  const double C = c.hidden_size, F = c.intermediate_size, qd = c.q_dim(), kvd = c.kv_dim();
  const double block = C * (qd + 2 * kvd) + qd * C + 3 * C * F;
  const double p_matmul = c.num_layers * block + static_cast<double>(c.vocab_size) * C;
  return 6 * p_matmul + 6.0 * c.num_layers * qd * (static_cast<double>(T) + 1);
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "?";
}
bool cpu_flag(const std::string& flag) {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) == 0)
      return (line + " ").find(" " + flag + " ") != std::string::npos;
  }
  return false;
}

// ---- child: one configuration in its own process
// --------------------------------------------------

// One sequence of `seq` random tokens (a generator seeded by `seed`), every position trained on
// the next.
train::Batch random_batch(const model::ModelConfig& config, int64_t seq, uint32_t seed) {
  train::Batch batch;
  batch.rows = 1;
  batch.length = seq;
  uint32_t x = seed;
  for (int64_t t = 0; t <= seq; ++t) {
    x = x * 1664525u + 1013904223u;
    const auto id = static_cast<int32_t>((x >> 8) % static_cast<uint32_t>(config.vocab_size));
    if (t < seq) batch.tokens.push_back(id);
    if (t > 0) batch.targets.push_back(id);
  }
  batch.positions.resize(static_cast<size_t>(seq));
  for (int64_t t = 0; t < seq; ++t)
    batch.positions[static_cast<size_t>(t)] = static_cast<int32_t>(t);
  batch.segment_ids.assign(static_cast<size_t>(seq), 1);
  batch.real_tokens = seq;
  return batch;
}

int run_child(const Mode& mode, int steps, int threads) {
  const model::ModelConfig config = bench::llama_155m_config();
  const bool lora = mode.name.starts_with("lora");
  const bool bf16_base = mode.name.starts_with("lora-bf16");
  const bool bf16_compute = mode.name.ends_with("+bf16");
  const double start = bench::now_seconds();
  const double rss_runtime = bench::current_rss_mb();
  auto m = model::LlamaModel::load(model::RandomWeights(config, 1, 0.02f),
                                   {.dtype = bf16_base ? tensor::DType::bf16 : tensor::DType::f32});
  model::TrainOptions options;
  options.compute = bf16_compute ? tensor::DType::bf16 : tensor::DType::f32;
  options.lora = lora;
  options.lora_spec.rank = 16;
  options.lora_spec.alpha = 32;
  options.checkpoint_activations = mode.checkpoint;
  train::Trainer trainer(*m, options, train::OptimizerConfig{}, 7);

  // Bytes of what stays whatever the batch: weights, trainable gradients, AdamW's two moments.
  double weight_bytes = 0, trainable = 0;
  for (const auto& L : m->weights().layers) {
    for (const tensor::Tensor* t :
         {&L.attn_norm, &L.wqkv, &L.wo, &L.ffn_norm, &L.w_gate_up, &L.w_down})
      weight_bytes += static_cast<double>(t->nbytes());
  }
  weight_bytes += static_cast<double>(m->weights().embed.nbytes() + m->weights().lm_head.nbytes() +
                                      m->weights().final_norm.nbytes());
  for (const model::Parameter& p : trainer.network().parameters())
    trainable += static_cast<double>(p.value.numel());
  const double state_bytes = weight_bytes + 3 * 4 * trainable;  // grads, exp_avg, exp_avg_sq (f32)

  const train::Batch batch = random_batch(config, mode.seq, 12345);

  std::vector<double> wall, cpu;
  double loss_first = 0, loss_last = 0;
  const bool verbose =
      std::getenv("SEQIT_BENCH_VERBOSE") != nullptr;  // step times on stderr (profiling)
  for (int i = 0; i < 1 + steps; ++i) {
    if (verbose)
      std::fprintf(
          stderr, "[%s %lld] step %d starts at %.1f s\n", mode.name.c_str(),
          static_cast<long long>(mode.seq), i,
          bench::now_seconds() - start);  // one warm-up step (primitives, first touch of the state)
    const double t0 = bench::now_seconds(), c0 = bench::process_cpu_seconds();
    const train::StepStats s = trainer.step({&batch, 1}, 1e-5f);
    if (i > 0) {
      wall.push_back(bench::now_seconds() - t0);
      cpu.push_back((bench::process_cpu_seconds() - c0) / threads);
    }
    (i == 0 ? loss_first : loss_last) = s.loss;
    if (verbose)
      std::fprintf(stderr, "[step %d] resident %.1f MiB, peak %.1f MiB\n", i,
                   bench::current_rss_mb(), bench::peak_rss_mb());
  }
  std::sort(wall.begin(), wall.end());
  std::sort(cpu.begin(), cpu.end());
  const double peak = bench::peak_rss_mb();
  json r{{"mode", mode.name},
         {"seq", mode.seq},
         {"checkpoint", mode.checkpoint},
         {"steps", steps},
         {"step_s_median", wall[wall.size() / 2]},
         {"step_s_best", wall.front()},
         {"step_cpu_s_median", cpu[cpu.size() / 2]},
         {"peak_rss_mb", peak},
         {"rss_runtime_mb", rss_runtime},
         {"state_mb", state_bytes / 1048576.0},
         {"workspace_mb", static_cast<double>(trainer.network().workspace_bytes()) / 1048576.0},
         {"trainable", trainable},
         {"loss_first", loss_first},
         {"loss_last", loss_last}};
  std::printf("RESULT %s\n", r.dump().c_str());
  return 0;
}

// Data-parallel: one step over a global batch of 2 sequences of `seq` tokens, by this process alone
// (both sequences as micro-batches) or, under mpirun, by each rank over its share. Rank 0 prints
// the result with every rank's peak RSS.
int run_child_dp(int64_t seq, int steps) {
  dist::Communicator& world = dist::world();
  const model::ModelConfig config = bench::llama_155m_config();
  auto m = model::LlamaModel::load(model::RandomWeights(config, 1, 0.02f), {});
  train::Trainer trainer(*m, model::TrainOptions{}, train::OptimizerConfig{}, 7, world);
  std::vector<train::Batch> mine;
  for (int i = 0; i < 2; ++i)
    if (i % world.size() == world.rank())
      mine.push_back(random_batch(config, seq, 12345u + static_cast<uint32_t>(i)));
  std::vector<double> wall, wait;
  for (int i = 0; i < 1 + steps; ++i) {
    const double t0 = bench::now_seconds();
    const train::StepStats s = trainer.step(mine, 1e-5f);
    if (i > 0) wall.push_back(bench::now_seconds() - t0), wait.push_back(s.sync_wait_s);
  }
  std::sort(wall.begin(), wall.end());
  std::sort(wait.begin(), wait.end());
  const std::vector<std::string> rss = world.allgather(fmt::format("{:.0f}", bench::peak_rss_mb()));
  if (world.rank() == 0) {
    json per_rank = json::array();
    for (const std::string& r : rss) per_rank.push_back(std::stod(r));
    json r{{"seq", seq},
           {"tokens", 2 * seq},
           {"ranks", world.size()},
           {"threads", tensor::num_threads()},
           {"step_s_best", wall.front()},
           {"step_s_median", wall[wall.size() / 2]},
           {"sync_wait_s_median", wait[wait.size() / 2]},
           {"sync_mb", static_cast<double>(trainer.sync_bytes_per_step()) / 1e6},
           {"rss_mb", per_rank},
           {"world", world.describe()}};
    std::printf("RESULT %s\n", r.dump().c_str());
  }
  std::fflush(stdout);
  dist::finalize_world();
  return 0;
}

// ---- parent
// ---------------------------------------------------------------------------------------

// Runs `cmd` and returns the JSON of its last line starting with `prefix` (nullopt: failed).
std::optional<json> run_json(const std::string& cmd, const std::string& prefix) {
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return std::nullopt;
  std::string out;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  const int rc = ::pclose(p);
  std::optional<json> result;
  size_t pos = 0;
  while (pos < out.size()) {
    const size_t end = std::min(out.find('\n', pos), out.size());
    const std::string line = out.substr(pos, end - pos);
    if (line.rfind(prefix, 0) == 0) {
      try {
        result = json::parse(line.substr(prefix.size()));
      } catch (const json::exception&) {
      }
    }
    pos = end + 1;
  }
  if (rc != 0 || !result) {
    std::fprintf(stderr, "bench_train: `%s` failed (status %d); its output:\n%s\n", cmd.c_str(), rc,
                 out.c_str());
    return std::nullopt;
  }
  return result;
}

std::string self_path() {
  char buf[4096] = {};
  if (::readlink("/proc/self/exe", buf, sizeof buf - 1) <= 0) return "bench_train";
  return buf;
}

// Tokens/s by wall time (the best timed step: on a machine shared with other processes the best
// step is the one least disturbed; the median is printed beside it) and by CPU time (process CPU /
// threads, median: the estimate for unshared cores).
struct Rate {
  double wall = 0, median = 0, cpu = 0, rss = 0;
};
Rate rate_of(const json& r) {
  const double T = r.at("seq").get<double>();
  return {T / r.at("step_s_best").get<double>(), T / r.at("step_s_median").get<double>(),
          T / r.at("step_cpu_s_median").get<double>(), r.at("peak_rss_mb").get<double>()};
}

// The --mpi table (see the header comment).
int run_mpi_comparison(int steps) {
  const std::string self = self_path();
  if (!dist::built_with_mpi() || std::system("command -v mpirun >/dev/null 2>&1") != 0) {
    std::printf("bench_train --mpi: %s; nothing measured\n",
                dist::built_with_mpi() ? "mpirun is not installed (openmpi-bin)"
                                       : "built without MPI (libopenmpi-dev)");
    return 1;
  }
  std::printf(
      "data-parallel: one optimiser step of full fine-tuning (f32) over a global batch of 2 x 1024 "
      "tokens, 1 warm-up + %d timed steps\n\n",
      steps);
  std::fflush(stdout);
  const std::string mpirun =
      "env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
      "OMPI_MCA_rmaps_base_oversubscribe=1 ";
  const auto one =
      run_json(fmt::format("'{}' --child-dp 1024 --threads 2 --steps {}", self, steps), "RESULT ");
  const auto two =
      run_json(fmt::format("{} mpirun -np 2 '{}' --child-dp 1024 --threads 1 --steps {}", mpirun,
                           self, steps),
               "RESULT ");
  const auto serial = run_json(
      fmt::format("{} SEQIT_DP_OVERLAP=0 mpirun -np 2 '{}' --child-dp 1024 --threads 1 --steps {}",
                  mpirun, self, steps),
      "RESULT ");
  std::printf(
      "| configuration | tok/s (best step) | tok/s (median) | peak RSS MB per process | gradient "
      "sum not hidden (s/step) | vs 1 process x 2 threads (best, median) "
      "|\n|---|---|---|---|---|---|\n");
  auto row = [&](const char* name, const std::optional<json>& r) {
    if (!r) {
      std::printf("| %s | failed | | | | |\n", name);
      return;
    }
    const double tokens = r->at("tokens").get<double>();
    const double best = tokens / r->at("step_s_best").get<double>(),
                 median = tokens / r->at("step_s_median").get<double>();
    std::string rss;
    for (const json& v : r->at("rss_mb"))
      rss += (rss.empty() ? "" : ", ") + fmt::format("{:.0f}", v.get<double>());
    std::string vs = "-";
    if (one && &r != &one) {
      const double t = one->at("tokens").get<double>();
      vs = fmt::format("{:.2f}x, {:.2f}x", best / (t / one->at("step_s_best").get<double>()),
                       median / (t / one->at("step_s_median").get<double>()));
    }
    std::printf("| %s | %.0f | %.0f | %s | %.3f | %s |\n", name, best, median, rss.c_str(),
                r->at("sync_wait_s_median").get<double>(), vs.c_str());
  };
  row("1 process x 2 threads (2 micro-batches)", one);
  row("2 ranks x 1 thread, sums overlapped with the backward", two);
  row("2 ranks x 1 thread, sums after the backward (SEQIT_DP_OVERLAP=0)", serial);
  if (one && two) {
    const double a = one->at("step_s_best").get<double>(), b = two->at("step_s_best").get<double>();
    std::printf(
        "\n2 ranks x 1 thread vs 1 process x 2 threads (target >= 0.9x tokens/s): %.2fx (best "
        "steps); %.0f MB of gradients summed per step (%s)\n",
        a / b, two->at("sync_mb").get<double>(), two->at("world").get<std::string>().c_str());
  }
  if (two && serial) {
    std::printf(
        "overlap: the gradient sums left %.3f s per step after the backward pass, %.3f s when "
        "they all start after it\n",
        two->at("sync_wait_s_median").get<double>(),
        serial->at("sync_wait_s_median").get<double>());
  }
  std::printf("load average at end: %s\n", bench::load_average().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  tensor::establish_openmp_wait_policy(argv);                   // as the seqit executable does
  if (dist::launched_by_mpi()) dist::init_world(&argc, &argv);  // a --child-dp rank
  int threads = 2, steps = 3;
  int64_t child_dp = 0;
  bool torch = true, quick = false, mpi = false;
  std::string only;  // ",full,torch," (--only): the configurations to run; empty: all
  std::optional<Mode> child;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc)
      threads = std::atoi(argv[++i]);
    else if (a == "--steps" && i + 1 < argc)
      steps = std::max(1, std::atoi(argv[++i]));
    else if (a == "--quick")
      quick = true;
    else if (a == "--only" && i + 1 < argc)
      only = "," + std::string(argv[++i]) + ",";
    else if (a == "--no-torch")
      torch = false;
    else if (a == "--mpi")
      mpi = true;
    else if (a == "--child-dp" && i + 1 < argc)
      child_dp = std::atoll(argv[++i]);
    else if (a == "--child" && i + 3 < argc) {
      child = Mode{argv[i + 1], std::atoll(argv[i + 2]), std::string(argv[i + 3]) == "1"};
      i += 3;
    } else if (a == "--help" || a == "-h") {
      std::printf(
          "usage: bench_train [--threads N] [--steps N] [--quick] [--no-torch]\n"
          "One optimiser step (forward + backward + AdamW) of a 155.7M Llama (hidden 1024, 8 "
          "layers,\n"
          "16/4 heads, ffn 2816, vocab 32000), 1 x 1024 tokens: seqit full fine-tuning next to "
          "PyTorch\n"
          "eager (f32 and bf16 autocast) in the same run, MFU against the FMA peak measured now, "
          "LoRA\n"
          "(r 16, all 7 projections), and activation checkpointing at 2048 tokens. Each "
          "configuration\n"
          "runs in its own process (peak RSS is its own).\n"
          "  --threads N   compute threads (default 2), for seqit and torch alike\n"
          "  --steps N     timed steps per configuration after one warm-up step (default 3)\n"
          "  --quick       one timed step per configuration\n"
          "  --only LIST   only these configurations, comma-separated: full, full+bf16, lora, "
          "lora-bf16,\n"
          "                lora+bf16, lora-bf16+bf16 (T=1024), full-ckpt, full-2k, full-2k-ckpt, "
          "torch\n"
          "  --no-torch    skip the PyTorch reference (bench/torch_train_reference.py, "
          "/usr/bin/python3)\n"
          "  --mpi         data-parallel instead: 2 MPI ranks x 1 thread against 1 process x 2 "
          "threads\n"
          "                on the same global batch (needs mpirun)\n");
      return 0;
    } else {
      std::fprintf(stderr, "bench_train: unknown argument %s (see --help)\n", a.c_str());
      return 2;
    }
  }
  if (quick) steps = 1;
  tensor::set_num_threads(threads);
  if (child) return run_child(*child, steps, threads);
  if (child_dp > 0) return run_child_dp(child_dp, steps);

  const model::ModelConfig config = bench::llama_155m_config();
  std::printf(
      "bench_train: Llama 155.7M (hidden 1024, 8 layers, 16/4 heads of 64, ffn 2816, vocab 32000, "
      "untied), "
      "batch 1, %d threads, 1 warm-up + %d timed steps per configuration\n",
      threads, steps);
  std::printf("cpu: %s; avx2 %s, avx512f %s, avx512_bf16 %s; kernels: %s\n", cpu_model().c_str(),
              cpu_flag("avx2") ? "yes" : "no", cpu_flag("avx512f") ? "yes" : "no",
              cpu_flag("avx512_bf16") ? "yes" : "no", tensor::cpu_features().c_str());
  std::printf("oneDNN f32 matmul: %s; OpenMP wait: %s\n",
              tensor::onednn_matmul_implementation().c_str(), tensor::openmp_wait_policy());
  std::printf("load average at start: %s\n", bench::load_average().c_str());
  const tensor::FmaPeak peak = tensor::measure_fma_peak(threads);
  const tensor::FmaPeak peak16 = tensor::measure_bf16_dot_peak(threads);
  std::printf(
      "bf16 arithmetic: %s; bf16 dot-product peak measured now: %.0f GFLOP/s by wall time, %.0f by "
      "CPU time\n",
      tensor::cpu_has_bf16_arithmetic() ? "yes (bf16 rows compute natively)"
                                        : "no (bf16 rows are emulated through f32 GEMMs)",
      peak16.gflops, peak16.gflops_cpu);
  std::printf(
      "FMA peak measured now (tensor::measure_fma_peak, f32 %s, %d threads): %.0f GFLOP/s by wall "
      "time, %.0f by "
      "CPU time\n",
      peak.isa.c_str(), threads, peak.gflops, peak.gflops_cpu);
  const double fpt1k = flops_per_token(config, 1024);
  std::printf(
      "FLOPs per token at T=1024: 6*P_matmul + 6*L*Hq*D*(T+1) = %.3f GFLOP (P_matmul %.1fM: blocks "
      "+ head)\n\n",
      fpt1k / 1e9, (fpt1k - 6.0 * 8 * 1024 * 1025) / 6 / 1e6);
  std::fflush(stdout);
  if (mpi) return run_mpi_comparison(steps);

  const std::string self = self_path();
  auto wanted = [&](const std::string& key) {
    return only.empty() || only.find("," + key + ",") != std::string::npos;
  };
  auto seqit_run = [&](const std::string& name, int64_t seq, bool ckpt) -> std::optional<json> {
    const std::string key = name + (seq == 2048 ? "-2k" : "") + (ckpt ? "-ckpt" : "");
    if (!wanted(key)) return std::nullopt;
    return run_json(fmt::format("'{}' --child {} {} {} --threads {} --steps {}", self, name, seq,
                                ckpt ? 1 : 0, threads, steps),
                    "RESULT ");
  };
  std::optional<json> tf32, tbf16;
  std::string torch_note;
  const auto script = bench::repository_root() / "bench/torch_train_reference.py";
  if (!wanted("torch")) torch = false;
  if (torch) {
    if (std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0) {
      torch_note =
          "PyTorch: /usr/bin/python3 cannot import torch (Debian python3-torch); not measured";
      torch = false;
    }
  }
  auto torch_run = [&](const char* dtype) {
    return run_json(
        fmt::format("/usr/bin/python3 '{}' --seq 1024 --steps {} --threads {} --dtype {}",
                    script.string(), steps, threads, dtype),
        "");
  };
  // Adjacent runs see the same machine (its speed drifts when shared): seqit, then torch.
  std::optional<json> full = seqit_run("full", 1024, false);
  std::optional<json> full16 = seqit_run("full+bf16", 1024, false);
  if (torch) {
    tf32 = torch_run("f32");
    tbf16 = torch_run("bf16");
  }
  std::optional<json> full_ckpt = seqit_run("full", 1024, true);
  std::optional<json> lora = seqit_run("lora", 1024, false);
  std::optional<json> lora16 = seqit_run("lora-bf16", 1024, false);
  std::optional<json> lora_c16 = seqit_run("lora+bf16", 1024, false);
  std::optional<json> lora16_c16 = seqit_run("lora-bf16+bf16", 1024, false);
  std::optional<json> full2k = seqit_run("full", 2048, false);
  std::optional<json> ckpt2k = seqit_run("full", 2048, true);

  auto ratio = [](double a, double b) {
    return b > 0 ? fmt::format("{:.2f}x", a / b) : std::string("-");
  };
  std::printf(
      "| configuration | tok/s (best step) | tok/s (median) | tok/s (CPU time) | peak RSS MB | vs "
      "reference (tok/s best, CPU; peak RSS) |\n"
      "|---|---|---|---|---|---|\n");
  auto row = [&](const char* name, const std::optional<json>& r, const std::optional<json>& ref,
                 const char* ref_name) {
    if (!r) {
      if (only.empty()) std::printf("| %s | failed | | | | |\n", name);
      return;
    }
    const Rate a = rate_of(*r);
    std::string vs = "";
    if (ref) {
      const Rate b = rate_of(*ref);
      vs = fmt::format("{}: {}, {}; RSS {}", ref_name, ratio(a.wall, b.wall), ratio(a.cpu, b.cpu),
                       ratio(a.rss, b.rss));
    }
    std::printf("| %s | %.0f | %.0f | %.0f | %.0f | %s |\n", name, a.wall, a.median, a.cpu, a.rss,
                vs.c_str());
  };
  // The PyTorch configuration with the higher tokens/s (CPU time) is its best.
  std::optional<json> tbest;
  for (const auto* t : {&tf32, &tbf16}) {
    if (*t && (!tbest || rate_of(**t).cpu > rate_of(*tbest).cpu)) tbest = *t;
  }
  const std::string best_name =
      tbest ? fmt::format("torch {}", tbest->at("dtype").get<std::string>()) : "";
  row("seqit full FT f32, T=1024", full, tbest, best_name.c_str());
  row("seqit full FT f32, T=1024, checkpointed", full_ckpt, tbest, best_name.c_str());
  row("seqit full FT bf16 compute, T=1024", full16, tbest, best_name.c_str());
  row("PyTorch eager f32, T=1024", tf32, std::nullopt, "");
  row("PyTorch eager bf16 autocast, T=1024", tbf16, std::nullopt, "");
  row("seqit LoRA r16 (7 proj), f32 base", lora, full, "full FT");
  row("seqit LoRA r16 (7 proj), bf16 base", lora16, full, "full FT");
  row("seqit LoRA r16 (7 proj), f32 base, bf16 compute", lora_c16, full16, "full FT bf16");
  row("seqit LoRA r16 (7 proj), bf16 base, bf16 compute", lora16_c16, full16, "full FT bf16");
  row("seqit full FT, T=2048", full2k, std::nullopt, "");
  row("seqit full FT, T=2048, checkpointed", ckpt2k, full2k, "no ckpt");
  std::printf(
      "| llama.cpp finetune (quoted, not measured) | %s | | | | 2-core AVX-512, "
      "docs/ENGINE_NOTES.md |\n\n",
      kLlamaCppAnchor);

  if (full) {
    const Rate a = rate_of(*full);
    const double gf_wall = a.wall * fpt1k / 1e9, gf_cpu = a.cpu * fpt1k / 1e9;
    std::printf(
        "MFU of seqit full FT (target >= 55%%): best step %.0f GFLOP/s = %.0f%% of the FMA peak; "
        "by CPU time %.0f GFLOP/s = %.0f%% of the CPU-time peak\n",
        gf_wall, 100 * gf_wall / peak.gflops, gf_cpu, 100 * gf_cpu / peak.gflops_cpu);
    if (tbest) {
      const Rate b = rate_of(*tbest);
      std::printf(
          "vs PyTorch's best (%s; target >= 1.3x at <= 60%% of its peak RSS): %.2fx tokens/s (best "
          "steps), %.2fx by CPU time, at %.0f%% of its peak RSS",
          best_name.c_str(), a.wall / b.wall, a.cpu / b.cpu, 100 * a.rss / b.rss);
      if (full_ckpt) {
        const Rate c = rate_of(*full_ckpt);
        std::printf("; checkpointed: %.2fx, %.2fx, at %.0f%%", c.wall / b.wall, c.cpu / b.cpu,
                    100 * c.rss / b.rss);
      }
      std::printf("\n");
    }
  }
  if (full16) {
    const Rate a = rate_of(*full16);
    const double gf_wall = a.wall * fpt1k / 1e9, gf_cpu = a.cpu * fpt1k / 1e9;
    if (peak16.gflops > 0) {
      std::printf(
          "MFU of seqit full FT bf16 compute: best step %.0f GFLOP/s = %.0f%% of the bf16 "
          "dot-product "
          "peak (%.0f%% of the f32 FMA peak); by CPU time %.0f%% of the CPU-time bf16 peak\n",
          gf_wall, 100 * gf_wall / peak16.gflops, 100 * gf_wall / peak.gflops,
          100 * gf_cpu / peak16.gflops_cpu);
    }
    if (tbest) {
      const Rate b = rate_of(*tbest);
      std::printf(
          "bf16 compute vs PyTorch's best (%s): %.2fx tokens/s (best steps), %.2fx by CPU time, at "
          "%.0f%% of its "
          "peak RSS\n",
          best_name.c_str(), a.wall / b.wall, a.cpu / b.cpu, 100 * a.rss / b.rss);
    }
    if (full) {
      std::printf(
          "bf16 compute vs f32: %.2fx tokens/s (best steps), peak RSS %.0f vs %.0f MB; loss after "
          "the timed steps "
          "%.5f vs %.5f\n",
          a.wall / rate_of(*full).wall, a.rss, rate_of(*full).rss,
          full16->at("loss_last").get<double>(), full->at("loss_last").get<double>());
    }
  }
  if (full && lora) {
    const Rate a = rate_of(*lora), b = rate_of(*full);
    std::printf(
        "LoRA vs full FT (targets >= 1.4x tokens/s, <= 0.5x peak RSS): %.2fx tokens/s (best "
        "steps), "
        "%.2fx by CPU time; %.2fx peak RSS\n",
        a.wall / b.wall, a.cpu / b.cpu, a.rss / b.rss);
  }
  // The same targets under bf16 compute, for both bases (a bf16 base is the natural choice there:
  // the projections multiply its bf16 values either way).
  if (full16) {
    for (const auto& [run, base] : {std::pair{&lora_c16, "f32"}, std::pair{&lora16_c16, "bf16"}}) {
      if (!*run) continue;
      const Rate a = rate_of(**run), b = rate_of(*full16);
      std::printf(
          "LoRA (%s base) vs full FT, bf16 compute: %.2fx tokens/s (best steps), %.2fx by CPU "
          "time; %.2fx peak RSS\n",
          base, a.wall / b.wall, a.cpu / b.cpu, a.rss / b.rss);
    }
  }
  if (full2k && ckpt2k) {
    auto act = [](const json& r) {
      return r.at("peak_rss_mb").get<double>() - r.at("state_mb").get<double>() -
             r.at("rss_runtime_mb").get<double>();
    };
    const double ws0 = full2k->at("workspace_mb"), ws1 = ckpt2k->at("workspace_mb");
    const Rate a = rate_of(*full2k), b = rate_of(*ckpt2k);
    std::printf(
        "activation checkpointing at T=2048 (target: activation memory at least halved, <= 35%% "
        "extra "
        "time):\n  workspace %.0f -> %.0f MB (%.2fx); peak RSS - weights/grads/AdamW - runtime "
        "%.0f -> "
        "%.0f MB (%.2fx); extra time %+.0f%% (best steps), %+.0f%% (CPU time)\n",
        ws0, ws1, ws1 / ws0, act(*full2k), act(*ckpt2k), act(*ckpt2k) / act(*full2k),
        100 * (a.wall / b.wall - 1), 100 * (a.cpu / b.cpu - 1));
  }
  std::printf(
      "\nseqit: train::Trainer::step (forward + backward, global-norm clip, AdamW), f32 unless the "
      "row says bf16 "
      "compute (bf16 GEMM operands, f32 accumulation, f32 master weights/gradients/AdamW), batch "
      "1. "
      "tok/s (CPU time) = tokens / (process CPU time / threads): idle OpenMP workers sleep after a "
      "short spin and a thread the hypervisor or another process holds off counts nothing, so on a "
      "loaded machine it errs fast. Peak RSS = VmHWM of the configuration's own process (runtime "
      "included). LoRA: alpha 32, dropout 0. MB = MiB.\n");
  for (const auto* t : {&tf32, &tbf16}) {
    if (!*t) continue;
    const json& j = **t;
    std::printf(
        "PyTorch %s (%s), %s, %d threads (OMP %s, OpenBLAS %s), %s, AdamW foreach %s; BLAS: %s; "
        "runtime RSS %.0f MB\n",
        j.value("torch", "?").c_str(), j.value("dtype", "?").c_str(),
        j.value("cpu_capability", "?").c_str(), j.value("threads", 0),
        j.value("omp_num_threads", "?").c_str(), j.value("openblas_num_threads", "?").c_str(),
        j.value("blas_info", "?").c_str(), j.value("foreach", false) ? "on" : "off",
        j.value("blas_library", "?").c_str(), j.value("rss_runtime_mb", 0.0));
  }
  if (!torch_note.empty()) std::printf("%s\n", torch_note.c_str());
  std::printf("load average at end: %s\n", bench::load_average().c_str());
  return 0;
}

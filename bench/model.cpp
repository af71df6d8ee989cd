// Llama inference speed: prefill, single-sequence decode and batched decode of a 155.7M-parameter
// Llama (hidden 1024, 8 layers, 16 heads, 4 kv heads, ffn 2816, vocab 32000, random weights) in f32
// and bf16, next to llama.cpp measured in the same run on the same weights and this machine's own
// limits (FMA peak, memory read bandwidth, oneDNN GEMM rate).
//
// llama.cpp: the model is written to a temporary GGUF (f32, bf16; the Llama-2 vocabulary from the
// shared data so that llama.cpp accepts the token ids) and bench/llama_cpp_reference.mjs runs it
// through node-llama-cpp's prebuilt CPU binaries (scripts/bench-oracles installs them into
// build/bench-oracles) with the same thread count, token ids and token counts. Without node or that
// package (or with --no-llama-cpp) the llama.cpp figures of docs/ENGINE_NOTES.md are printed
// instead, marked as quoted.
//
// The model is loaded as seqit generate / serve load it (projections packed for decoding); --plain
// measures the plain row-major layout instead (what training uses).
//
// Usage: bench_model [--threads N] [--decode-tokens N] [--quick] [--no-llama-cpp] [--plain]
//                    [--keep-gguf DIR] [--batched-only [--bf16]]
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "bench_models.h"
#include "bench_util.h"
#include "model/convert.h"
#include "model/llama.h"
#include "model/random_weights.h"
#include "tensor/calibrate.h"
#include "tensor/ops.h"
#include "tensor/sampling.h"
#include "tensor/threading.h"

using namespace seqit;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string load_average() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a + " " + b + " " + c;
}

fs::path shared_data() {
  const char* env = std::getenv("SEQIT_SHARED_DATA");
  return env && *env ? fs::path(env) : fs::path(SEQIT_SHARED_DATA_DEFAULT);
}

// llama.cpp's figures for one dtype: measured by bench/llama_cpp_reference.mjs, or quoted.
struct LlamaCppFigures {
  double prefill = 0, decode = 0, batched = 0;  // tokens/s inside llama_decode; batched 0 = unknown
  double prefill_wall = 0, decode_wall = 0, batched_wall = 0;  // around node-llama-cpp's calls
  bool measured = false;
  nlohmann::json info;
};

// Writes the model as GGUF and has llama.cpp time it; nullopt (with the reason on stderr) when it
// could not run.
// The GGUF is written to `keep_dir` and kept when that is set, else to a temporary folder.
std::optional<LlamaCppFigures> measure_llama_cpp(const model::WeightSource& weights,
                                                 model::StorageType type, const char* dtype,
                                                 int threads, int decode_tokens, int prefill_reps,
                                                 const std::string& keep_dir) {
  const fs::path root = bench::repository_root();
  const fs::path script = root / "bench/llama_cpp_reference.mjs",
                 packages = root / "build/bench-oracles";
  if (std::system("command -v node >/dev/null 2>&1") != 0) {
    std::fprintf(stderr, "bench_model: node is not installed; llama.cpp figures are quoted\n");
    return std::nullopt;
  }
  if (!fs::exists(packages / "node_modules/node-llama-cpp")) {
    std::fprintf(stderr,
                 "bench_model: %s has no node-llama-cpp (run scripts/bench-oracles); llama.cpp "
                 "figures are quoted\n",
                 packages.c_str());
    return std::nullopt;
  }
  const fs::path dir = fs::temp_directory_path() / fmt::format("seqit-bench-model-{}", ::getpid());
  fs::create_directories(dir);
  if (!keep_dir.empty()) fs::create_directories(keep_dir);
  const fs::path gguf =
      (keep_dir.empty() ? dir : fs::path(keep_dir)) / fmt::format("bench-model-{}.gguf", dtype);
  const fs::path out = dir / "llama_cpp.json";
  model::ExportOptions options;
  options.type = type;
  options.tokenizer = shared_data() / "tokenizers/llama2/llama2c_tokenizer.bin";
  options.name = "seqit bench_model";
  std::optional<LlamaCppFigures> figures;
  try {
    model::write_gguf_model(weights, gguf, options);
    std::string cmd = fmt::format(
        "SEQIT_BENCH_ORACLE_DIR='{}' node '{}' bench '{}' --threads {} --prefill-tokens 512 "
        "--prefill-reps {} "
        "--prompt-tokens 16 --warmup-tokens 3 --decode-tokens {} --sequences 16 > '{}'",
        packages.string(), script.string(), gguf.string(), threads, prefill_reps, decode_tokens,
        out.string());
    if (std::system(cmd.c_str()) == 0) {
      std::ifstream in(out);
      nlohmann::json j = nlohmann::json::parse(in);
      LlamaCppFigures f;
      f.prefill = j.at("prefill_tps"), f.decode = j.at("decode_tps"),
      f.batched = j.at("batched_tps");
      f.prefill_wall = j.at("prefill_wall_tps"), f.decode_wall = j.at("decode_wall_tps");
      f.batched_wall = j.at("batched_wall_tps");
      f.measured = true;
      f.info = j;
      figures = f;
    } else {
      std::fprintf(stderr,
                   "bench_model: the llama.cpp reference failed on %s; its figures are quoted\n",
                   gguf.c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_model: llama.cpp reference: %s; its figures are quoted\n",
                 e.what());
  }
  fs::remove_all(dir);
  return figures;
}

// oneDNN GEMM rate through the tensor op on a Llama-sized shape: y[512, 2816] = x[512, 1024] w^T.
// x_dtype bf16: both operands bf16 (oneDNN's native bf16 matmul where the CPU has one).
double gemm_gflops(tensor::DType dtype, tensor::DType x_dtype = tensor::DType::f32) {
  using tensor::Tensor;
  Tensor x = Tensor::full({512, 1024}, 0.01, x_dtype);
  Tensor w = Tensor::full({2816, 1024}, 0.02, dtype);
  Tensor y = Tensor::empty({512, 2816}, tensor::DType::f32);
  tensor::linear_forward(y, x, w);
  int reps = 0;
  auto t0 = Clock::now();
  while (seconds_since(t0) < 1.0) {
    tensor::linear_forward(y, x, w);
    ++reps;
  }
  return 2.0 * 512 * 1024 * 2816 * reps / seconds_since(t0) / 1e9;
}

struct Timings {
  double prefill_tps = 0, decode_tps = 0, batched_tps = 0;
  double batched_gain = 0;  // 16-sequence over single-sequence throughput
};
constexpr int kDecodeRounds = 3;

// Bytes of weights one decode step reads: every matrix but the embedding (one row), plus norms.
double streamed_bytes(const model::LlamaModel& m) {
  double bytes = 0;
  const auto& w = m.weights();
  // The form the forward reads: packed panels when the model holds them, else the plain matrix.
  auto matrix = [](const tensor::Tensor& plain, const tensor::PackedWeight& packed) {
    return static_cast<double>(packed.defined() ? packed.panels.nbytes() : plain.nbytes());
  };
  for (const auto& L : w.layers) {
    bytes += matrix(L.wqkv, L.wqkv_packed) + matrix(L.wo, L.wo_packed) +
             matrix(L.w_gate_up, L.w_gate_up_packed) + matrix(L.w_down, L.w_down_packed) +
             L.attn_norm.nbytes() + L.ffn_norm.nbytes();
  }
  return bytes + matrix(w.lm_head, w.lm_head_packed) + w.final_norm.nbytes();
}

Timings run_model(const model::LlamaModel& m, int decode_tokens, int prefill_reps,
                  bool batched_only = false) {
  using tensor::Tensor;
  Timings t;
  const int64_t V = m.config().vocab_size;
  model::ForwardWorkspace ws;
  Tensor logits = Tensor::empty({16, V}, tensor::DType::f32);
  std::vector<int32_t> prompt(512);
  for (int i = 0; i < 512; ++i) prompt[i] = (i * 7919 + 13) % 32000;
  // Prefill: 512 tokens of one sequence, logits of the last only.
  double best = 1e9;
  for (int rep = 0; rep < (batched_only ? 0 : prefill_reps + 1); ++rep) {
    model::KvCache cache = m.new_cache();
    model::ForwardBatch b;
    b.tokens = prompt;
    b.chunks = {{&cache, 512}};
    b.logit_rows = {511};
    auto t0 = Clock::now();
    m.forward(b, logits.narrow(0, 0, 1), ws);
    if (rep > 0) best = std::min(best, seconds_since(t0));  // the first run warms caches/primitives
  }
  t.prefill_tps = 512 / best;
  // Single-sequence decode after a 16-token prompt.
  auto decode = [&](int sequences) {
    std::vector<model::KvCache> caches;
    for (int s = 0; s < sequences; ++s) caches.push_back(m.new_cache());
    model::ForwardBatch b;
    for (int s = 0; s < sequences; ++s) {
      b.tokens.insert(b.tokens.end(), prompt.begin() + s, prompt.begin() + s + 16);
      b.chunks.push_back({&caches[s], 16});
      b.logit_rows.push_back(16 * s + 15);
    }
    m.forward(b, logits.narrow(0, 0, sequences), ws);
    auto step = [&] {
      b.tokens.clear();
      b.chunks.clear();
      b.logit_rows.clear();
      for (int s = 0; s < sequences; ++s) {
        b.tokens.push_back(
            tensor::argmax({logits.narrow(0, s, 1).data<float>(), static_cast<size_t>(V)}));
        b.chunks.push_back({&caches[s], 1});
        b.logit_rows.push_back(s);
      }
      m.forward(b, logits.narrow(0, 0, sequences), ws);
    };
    for (int i = 0; i < 3; ++i) step();  // warm-up
    auto t0 = Clock::now();
    for (int i = 0; i < decode_tokens; ++i) step();
    return sequences * decode_tokens / seconds_since(t0);
  };
  if (batched_only) {
    t.batched_tps = decode(16);
    return t;
  }
  // One sequence and 16 in alternating rounds (fresh caches each time, so every round decodes the
  // same positions): this VM's speed drifts by tens of percent within minutes, and adjacent
  // measurements see the same machine. Rates: the median round; gain: the median per-round ratio.
  std::vector<double> single, batched, gain;
  for (int round = 0; round < kDecodeRounds; ++round) {
    single.push_back(decode(1));
    batched.push_back(decode(16));
    gain.push_back(batched.back() / single.back());
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  t.decode_tps = median(single);
  t.batched_tps = median(batched);
  t.batched_gain = median(gain);
  return t;
}
}  // namespace

int main(int argc, char** argv) {
  seqit::tensor::establish_openmp_wait_policy(argv);  // as the seqit executable does
  int threads = 2, decode_tokens = 48, prefill_reps = 3;
  bool llama_cpp = true, packed = true, batched_only = false;
  tensor::DType batched_dtype = tensor::DType::f32;  // of --batched-only
  std::string
      keep_gguf;  // a folder to keep the GGUF files in (to run llama.cpp's own tools on them)
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
    if (a == "--decode-tokens" && i + 1 < argc) decode_tokens = std::atoi(argv[++i]);
    if (a == "--quick") decode_tokens = 8, prefill_reps = 1;
    if (a == "--no-llama-cpp") llama_cpp = false;
    if (a == "--plain") packed = false;
    if (a == "--batched-only") batched_only = true;
    if (a == "--bf16") batched_dtype = tensor::DType::bf16;
    if (a == "--keep-gguf" && i + 1 < argc) keep_gguf = argv[++i];
    if (a == "--help" || a == "-h") {
      std::printf(
          "usage: bench_model [--threads N] [--decode-tokens N] [--quick] [--no-llama-cpp] "
          "[--plain]\n"
          "                   [--keep-gguf DIR] [--batched-only [--bf16]]\n"
          "Prefill, single-sequence and 16-sequence decode of a 155.7M Llama in f32 and bf16, next "
          "to\n"
          "llama.cpp in the same run (scripts/bench-oracles installs it) and this machine's "
          "limits.\n"
          "  --threads N        compute threads (default 2)\n"
          "  --decode-tokens N  tokens per decode round (default 48; %d rounds alternate 1 and 16 "
          "sequences)\n"
          "  --quick            8 decode tokens, one prefill repetition\n"
          "  --no-llama-cpp     print the quoted llama.cpp figures instead of measuring them\n"
          "  --plain            plain row-major weights (as training holds them) instead of "
          "decoding panels\n"
          "  --keep-gguf DIR    keep the GGUF files written for llama.cpp in DIR\n"
          "  --batched-only     only the 16-sequence decode loop, f32 or with --bf16 bf16 (for a "
          "profiler)\n",
          kDecodeRounds);
      return 0;
    }
  }
  tensor::set_num_threads(threads);
  if (batched_only) {
    // Just the 16-sequence decode loop (to run under a profiler).
    auto m = model::LlamaModel::load(model::RandomWeights(bench::llama_155m_config(), 1, 0.02f),
                                     {.dtype = batched_dtype, .pack_for_inference = packed});
    std::printf("%s decode, 16 sequences: %.1f t/s\n",
                std::string(tensor::dtype_name(batched_dtype)).c_str(),
                run_model(*m, decode_tokens, 0, true).batched_tps);
    return 0;
  }
  std::printf(
      "bench_model: Llama 155.7M (hidden 1024, 8 layers, 16/4 heads, ffn 2816, vocab 32000), %d "
      "threads, "
      "%s weights\n",
      threads, packed ? "packed (decoding panels)" : "plain row-major");
  std::printf("load average at start: %s\n", load_average().c_str());
  // The library's probes (tensor/calibrate.h), as bench_tensor_gemm reports them.
  const double peak = tensor::measure_fma_peak(threads).gflops;
  const double bandwidth = tensor::measure_read_bandwidth(threads).gbs;
  const double gemm_f32 = gemm_gflops(tensor::DType::f32),
               gemm_bf16 = gemm_gflops(tensor::DType::bf16),
               gemm_bf16x = gemm_gflops(tensor::DType::bf16, tensor::DType::bf16);
  // The bf16 rows run bf16 x bf16 where the CPU has bf16 arithmetic (tensor/ops.h); their
  // "vs this machine" column is then against the bf16 dot-product peak (2x f32 on AVX512_BF16).
  const bool bf16_math = tensor::bf16_activations() == tensor::Bf16Activations::kBf16;
  const double peak16 = tensor::measure_bf16_dot_peak(threads).gflops;
  std::printf(
      "machine, measured now: %s; fp32 FMA peak %.0f GFLOP/s, bf16 dot-product peak %s, read "
      "bandwidth %.1f GB/s; oneDNN GEMM [512x1024x2816] f32 %.0f, bf16 weights x f32 %.0f, bf16 x "
      "bf16 %.0f GFLOP/s\n",
      tensor::cpu_features().c_str(), peak,
      peak16 > 0 ? fmt::format("{:.0f} GFLOP/s", peak16).c_str() : "- (no AVX512_BF16)", bandwidth,
      gemm_f32, gemm_bf16, gemm_bf16x);
  std::printf("bf16 weights compute with %s activations (SEQIT_BF16_ACTIVATIONS=auto|f32|bf16)\n\n",
              bf16_math ? "bf16" : "f32");

  model::ModelConfig config = bench::llama_155m_config();
  model::RandomWeights weights(config, 1, 0.02f);
  // FLOPs per prefill token: 2 x (matrix parameters in the blocks) + attention (QK^T and PV over
  // on average 256 earlier positions); the output head runs for the last token only.
  const double block_params = 8.0 * (1024.0 * (1024 + 512) + 1024.0 * 1024 + 3.0 * 1024 * 2816);
  const double flops_per_token = 2 * block_params + 8 * 2 * 2 * 256.0 * 1024;
  // FLOPs per decoded token: the blocks and the output head (attention over a few dozen positions
  // is left out, so the bound below errs high).
  const double decode_flops_per_token = 2 * (block_params + 32000.0 * 1024);
  // llama.cpp -t 2 on a 2-core AVX-512 Zen 4 (docs/ENGINE_NOTES.md), printed when it cannot run
  // here.
  struct Quoted {
    const char* dtype;
    model::StorageType type;
    double prefill, decode;
  };
  const Quoted quoted[] = {{"f32", model::StorageType::f32, 794, 81},
                           {"bf16", model::StorageType::bf16, 1515, 123}};
  bool any_quoted = false;
  std::vector<std::string> notes;
  std::printf("%-6s %-22s %12s %12s %12s %28s\n", "dtype", "measure", "seqit", "llama.cpp",
              "seqit/llama", "vs this machine");
  for (const Quoted& q : quoted) {
    auto dtype = q.type == model::StorageType::f32 ? tensor::DType::f32 : tensor::DType::bf16;
    auto m = model::LlamaModel::load(weights, {.dtype = dtype, .pack_for_inference = packed});
    Timings t = run_model(*m, decode_tokens, prefill_reps);
    const double step_bytes = streamed_bytes(*m);
    const double gbs = t.decode_tps * step_bytes / 1e9;
    m.reset();  // llama.cpp runs next, with the memory to itself
    std::optional<LlamaCppFigures> ref;
    if (llama_cpp)
      ref = measure_llama_cpp(weights, q.type, q.dtype, threads, decode_tokens, prefill_reps,
                              keep_gguf);
    if (!ref) {
      ref = LlamaCppFigures{};
      ref->prefill = q.prefill, ref->decode = q.decode;
      any_quoted = true;
    } else {
      const auto& i = ref->info;
      notes.push_back(fmt::format(
          "{}: llama.cpp {} ({}), CPU backend variant {}, {} threads, flash attention {}, KV cache "
          "{}; timed around "
          "node-llama-cpp's calls instead: prefill {:.0f}, decode {:.1f}, 16 sequences {:.1f} t/s",
          q.dtype, i.value("llama_cpp_release", "?"), i.value("build", "?"),
          i.value("cpu_variant", "?"), i.value("context_threads", 0),
          i.value("flash_attention", false) ? "on" : "off", i.value("kv_cache_type", "?"),
          ref->prefill_wall, ref->decode_wall, ref->batched_wall));
      if (notes.size() == 1) notes.push_back("      " + i.value("system_info", std::string("?")));
    }
    const char* mark = ref->measured ? "" : "*";
    auto rate = [](double tps, const char* m) {
      return tps > 0 ? fmt::format("{:.1f}{} t/s", tps, m) : std::string("-");
    };
    auto ratio = [](double a, double b) {
      return b > 0 ? fmt::format("{:.2f}x", a / b) : std::string("-");
    };
    const double prefill_gflops = t.prefill_tps * flops_per_token / 1e9;
    // The compute peak this dtype's products run against.
    const bool on_bf16_peak = dtype == tensor::DType::bf16 && bf16_math && peak16 > 0;
    const double dtype_peak = on_bf16_peak ? peak16 : peak;
    std::printf("%-6s %-22s %12s %12s %12s %18.0f%% of %s peak\n", q.dtype, "prefill 512",
                rate(t.prefill_tps, "").c_str(), rate(ref->prefill, mark).c_str(),
                ratio(t.prefill_tps, ref->prefill).c_str(), 100 * prefill_gflops / dtype_peak,
                on_bf16_peak ? "bf16" : "FMA");
    std::printf("%-6s %-22s %12s %12s %12s %13.1f GB/s = %3.0f%% bw\n", q.dtype,
                "decode, 1 sequence", rate(t.decode_tps, "").c_str(),
                rate(ref->decode, mark).c_str(), ratio(t.decode_tps, ref->decode).c_str(), gbs,
                100 * gbs / bandwidth);
    // The most 16 sequences could gain over one: a 16-token step takes at least its FLOPs at the
    // FMA peak (and its weight bytes at the read bandwidth), the single-sequence step what it
    // measured.
    const double step16_min =
        std::max(16 * decode_flops_per_token / (dtype_peak * 1e9), step_bytes / (bandwidth * 1e9));
    const double bound = 16 / t.decode_tps / step16_min;  // against the median single rate
    std::printf("%-6s %-22s %12s %12s %12s %9.2fx of 1 seq (bound %.1fx)\n", q.dtype,
                "decode, 16 sequences", rate(t.batched_tps, "").c_str(),
                rate(ref->batched, mark).c_str(), ratio(t.batched_tps, ref->batched).c_str(),
                t.batched_gain, bound);
  }
  std::printf(
      "\nbound: the 16-sequence gain if a 16-token step ran at the compute peak of its row (or "
      "streamed its weights at the read bandwidth, if slower), against the single-sequence rate "
      "measured.\n");
  std::printf(
      "llama.cpp column: the npm prebuilt (node-llama-cpp), not a native build. A llama.cpp "
      "built from source with GGML_NATIVE=ON on a 2-core Zen 5 ran 1.5-2.5x that prebuilt (f32 "
      "prefill 1.49x, bf16 prefill 1.45x, f32 decode 1.58x, bf16 decode 2.52x; issue 19, "
      "docs/engine.md): divide the seqit/llama ratios by those to compare with it.\n");
  if (!notes.empty()) {
    std::printf(
        "llama.cpp measured now on the same weights (GGUF), token ids and counts; its figures are "
        "the time inside "
        "llama_decode, as llama-bench reports it:\n");
    for (const auto& n : notes) std::printf("  %s\n", n.c_str());
  }
  if (any_quoted) {
    std::printf(
        "* quoted, not measured here: llama.cpp -t 2 on a 2-core AVX-512 Zen 4 "
        "(docs/ENGINE_NOTES.md); "
        "scripts/bench-oracles installs the llama.cpp reference.\n");
  }
  std::printf("load average at end: %s\n", load_average().c_str());
  return 0;
}

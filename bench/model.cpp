// Llama inference speed: prefill, single-sequence decode and batched decode of a 155.7M-parameter
// Llama (hidden 1024, 8 layers, 16 heads, 4 kv heads, ffn 2816, vocab 32000, random weights) in f32
// and bf16, next to this machine's own limits measured in the same run (FMA peak, memory read
// bandwidth, oneDNN GEMM rate) and llama.cpp's figures from docs/ENGINE_NOTES.md (measured on an
// AVX-512 Zen 4; llama.cpp is not on this machine, so those are quoted, not re-measured).
//
// Usage: bench_model [--threads N] [--decode-tokens N] [--quick]
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "model/llama.h"
#include "model/random_weights.h"
#include "tensor/ops.h"
#include "tensor/sampling.h"
#include "tensor/threading.h"

using namespace seqit;
using Clock = std::chrono::steady_clock;

namespace {
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string load_average() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a + " " + b + " " + c;
}

// fp32 FMA peak: 10 independent multiply-add chains on 8-wide vectors (GCC vector extension; with
// -march=native and contraction on, each is one FMA instruction), on `threads` threads.
typedef float v8 __attribute__((vector_size(32)));
__attribute__((optimize("fp-contract=fast"), noinline)) float fma_chains(int64_t iters, float seed) {
  // Ten named accumulators (not an array) so they stay in registers: ten chains hide FMA latency.
  v8 a = v8{} + 0.999999f, b = v8{} + 1e-7f;
  v8 c0 = v8{} + seed, c1 = c0 + 1, c2 = c0 + 2, c3 = c0 + 3, c4 = c0 + 4, c5 = c0 + 5, c6 = c0 + 6, c7 = c0 + 7,
     c8 = c0 + 8, c9 = c0 + 9;
  for (int64_t i = 0; i < iters; ++i) {
    c0 = c0 * a + b, c1 = c1 * a + b, c2 = c2 * a + b, c3 = c3 * a + b, c4 = c4 * a + b;
    c5 = c5 * a + b, c6 = c6 * a + b, c7 = c7 * a + b, c8 = c8 * a + b, c9 = c9 * a + b;
  }
  v8 s = c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9;
  return s[0];
}

double fma_peak_gflops(int threads) {
  const int64_t iters = 40'000'000;
  std::vector<float> result(threads);
  auto t0 = Clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back([&, t] { result[t] = fma_chains(iters, static_cast<float>(t)); });
  for (auto& th : pool) th.join();
  double secs = seconds_since(t0);
  if (result[0] == 12345.f) std::puts("");  // keep the work observable
  return 2.0 * 8 * 10 * iters * threads / secs / 1e9;
}

// Read bandwidth: summing a 1 GiB buffer of 64-bit words on `threads` threads (best of 3).
double read_bandwidth_gbs(int threads) {
  const size_t words = (size_t{1} << 30) / 8;
  std::vector<uint64_t> buf(words);
  for (size_t i = 0; i < words; ++i) buf[i] = i;
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    std::vector<uint64_t> sums(threads);
    auto t0 = Clock::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        size_t begin = words / threads * t, end = t + 1 == threads ? words : words / threads * (t + 1);
        uint64_t s = 0;
        for (size_t i = begin; i < end; ++i) s += buf[i];
        sums[t] = s;
      });
    }
    for (auto& th : pool) th.join();
    double secs = seconds_since(t0);
    if (sums[0] == 1) std::puts("");
    best = std::max(best, words * 8.0 / secs / 1e9);
  }
  return best;
}

// oneDNN GEMM rate through the tensor op on a Llama-sized shape: y[512, 2816] = x[512, 1024] w^T.
double gemm_gflops(tensor::DType dtype) {
  using tensor::Tensor;
  Tensor x = Tensor::full({512, 1024}, 0.01, tensor::DType::f32);
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

model::ModelConfig bench_config() {
  model::ModelConfig c;
  c.architecture = "llama";
  c.vocab_size = 32000;
  c.hidden_size = 1024;
  c.intermediate_size = 2816;
  c.num_layers = 8;
  c.num_heads = 16;
  c.num_kv_heads = 4;
  c.head_dim = 64;
  c.max_position_embeddings = 2048;
  c.tie_word_embeddings = false;
  return c;
}

struct Timings {
  double prefill_tps = 0, decode_tps = 0, batched_tps = 0;
};

// Bytes of weights one decode step reads: every matrix but the embedding (one row), plus norms.
double streamed_bytes(const model::LlamaModel& m) {
  double bytes = 0;
  const auto& w = m.weights();
  for (const auto& L : w.layers) {
    bytes += L.wqkv.nbytes() + L.wo.nbytes() + L.w_gate_up.nbytes() + L.w_down.nbytes() + L.attn_norm.nbytes() +
             L.ffn_norm.nbytes();
  }
  return bytes + w.lm_head.nbytes() + w.final_norm.nbytes();
}

Timings run_model(const model::LlamaModel& m, int decode_tokens, int prefill_reps) {
  using tensor::Tensor;
  Timings t;
  const int64_t V = m.config().vocab_size;
  model::ForwardWorkspace ws;
  Tensor logits = Tensor::empty({16, V}, tensor::DType::f32);
  std::vector<int32_t> prompt(512);
  for (int i = 0; i < 512; ++i) prompt[i] = (i * 7919 + 13) % 32000;
  // Prefill: 512 tokens of one sequence, logits of the last only.
  double best = 1e9;
  for (int rep = 0; rep < prefill_reps + 1; ++rep) {
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
        b.tokens.push_back(tensor::argmax({logits.narrow(0, s, 1).data<float>(), static_cast<size_t>(V)}));
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
  t.decode_tps = decode(1);
  t.batched_tps = decode(16);
  return t;
}
}  // namespace

int main(int argc, char** argv) {
  seqit::tensor::establish_openmp_wait_policy(argv);  // as the seqit executable does
  int threads = 2, decode_tokens = 48, prefill_reps = 3;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
    if (a == "--decode-tokens" && i + 1 < argc) decode_tokens = std::atoi(argv[++i]);
    if (a == "--quick") decode_tokens = 8, prefill_reps = 1;
  }
  tensor::set_num_threads(threads);
  std::printf("bench_model: Llama 155.7M (hidden 1024, 8 layers, 16/4 heads, ffn 2816, vocab 32000), %d threads\n", threads);
  std::printf("load average at start: %s\n", load_average().c_str());
  const double peak = fma_peak_gflops(threads);
  const double bandwidth = read_bandwidth_gbs(threads);
  const double gemm_f32 = gemm_gflops(tensor::DType::f32), gemm_bf16 = gemm_gflops(tensor::DType::bf16);
  std::printf("machine, measured now: fp32 FMA peak %.0f GFLOP/s, read bandwidth %.1f GB/s, oneDNN GEMM [512x1024x2816] "
              "f32 %.0f / bf16-weights %.0f GFLOP/s\n\n",
              peak, bandwidth, gemm_f32, gemm_bf16);

  model::ModelConfig config = bench_config();
  model::RandomWeights weights(config, 1, 0.02f);
  // FLOPs per prefill token: 2 x (matrix parameters in the blocks) + attention (QK^T and PV over
  // on average 256 earlier positions); the output head runs for the last token only.
  const double block_params = 8.0 * (1024.0 * (1024 + 512) + 1024.0 * 1024 + 3.0 * 1024 * 2816);
  const double flops_per_token = 2 * block_params + 8 * 2 * 2 * 256.0 * 1024;
  struct Ref {
    const char* dtype;
    double prefill, decode;
  };
  const Ref refs[] = {{"f32", 794, 81}, {"bf16", 1515, 123}};
  std::printf("%-6s %-22s %12s %12s %12s %28s\n", "dtype", "measure", "seqit", "llama.cpp*", "ratio", "vs this machine");
  for (const Ref& ref : refs) {
    auto dtype = std::string(ref.dtype) == "f32" ? tensor::DType::f32 : tensor::DType::bf16;
    auto m = model::LlamaModel::load(weights, {dtype});
    Timings t = run_model(*m, decode_tokens, prefill_reps);
    double gbs = t.decode_tps * streamed_bytes(*m) / 1e9;
    double prefill_gflops = t.prefill_tps * flops_per_token / 1e9;
    std::printf("%-6s %-22s %9.0f t/s %9.0f t/s %11.2fx %18.0f%% of FMA peak\n", ref.dtype, "prefill 512", t.prefill_tps,
                ref.prefill, t.prefill_tps / ref.prefill, 100 * prefill_gflops / peak);
    std::printf("%-6s %-22s %9.1f t/s %9.0f t/s %11.2fx %13.1f GB/s = %3.0f%% bw\n", ref.dtype, "decode, 1 sequence",
                t.decode_tps, ref.decode, t.decode_tps / ref.decode, gbs, 100 * gbs / bandwidth);
    std::printf("%-6s %-22s %9.1f t/s %12s %11.2fx %28s\n", ref.dtype, "decode, 16 sequences", t.batched_tps, "",
                t.batched_tps / t.decode_tps, "(x = vs 1 sequence)");
  }
  std::printf("\n* llama.cpp -t 2 on a 2-core AVX-512 Zen 4 (docs/ENGINE_NOTES.md); this machine: %s.\n",
#if defined(__AVX512F__)
              "AVX-512"
#else
              "AVX2 only (no AVX-512, no native bf16)"
#endif
  );
  std::printf("load average at end: %s\n", load_average().c_str());
  return 0;
}

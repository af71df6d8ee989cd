// KV cache element type at long contexts: decoding after a 1,536-token prompt on the 155.7M Llama
// (bf16 weights, packed), 1 and 16 sequences, with an f32, f16 and bf16 cache. At this length
// attention reads the cache (16 sequences x 1.5k positions x 8 layers x 2 x 256 values) about as
// much as the weights, so a 16-bit cache should show most with 16 sequences.
//
// Decode rate = new tokens after the first / (time for 65 new tokens - time for 1), so prefill is
// left out; rounds alternate between the cache types, the table shows the best of each.
//
// Usage: bench_kv_cache [--threads N] [--prompt N] [--rounds N]
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "bench_models.h"
#include "infer/engine.h"
#include "model/llama.h"
#include "model/random_weights.h"
#include "tensor/calibrate.h"
#include "tensor/threading.h"

using namespace seqit;
using Clock = std::chrono::steady_clock;

namespace {

double generate_seconds(const model::LlamaModel& m, int sequences, int prompt, int tokens) {
  infer::Engine engine(m, nullptr, {.max_batch = sequences, .max_step_tokens = 2048});
  std::vector<infer::GenerationRequest> requests;
  for (int s = 0; s < sequences; ++s) {
    infer::GenerationRequest r;
    for (int i = 0; i < prompt; ++i) r.prompt.push_back(1 + (i * 7919 + s * 104729) % 31000);
    r.stop.max_new_tokens = tokens;
    r.stop.ignore_eos = true;
    requests.push_back(std::move(r));
  }
  const auto t0 = Clock::now();
  engine.generate(std::move(requests));
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  tensor::establish_openmp_wait_policy(argv);
  int threads = 2, prompt = 1536, rounds = 2;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else if (a == "--prompt" && i + 1 < argc) {
      prompt = std::atoi(argv[++i]);
    } else if (a == "--rounds" && i + 1 < argc) {
      rounds = std::atoi(argv[++i]);
    } else {
      std::printf(
          "usage: bench_kv_cache [--threads N] [--prompt N] [--rounds N]\n"
          "Decode rate after a long prompt with an f32, f16 and bf16 KV cache (155.7M Llama, bf16 "
          "weights), 1 and 16 sequences.\n");
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  tensor::set_num_threads(threads);
  std::printf("bench_kv_cache: %d threads; cpu: %s; prompt %d tokens, 64 decoded after it\n\n",
              threads, tensor::cpu_features().c_str(), prompt);
  const std::vector<std::pair<const char*, tensor::DType>> caches = {
      {"f32", tensor::DType::f32}, {"f16", tensor::DType::f16}, {"bf16", tensor::DType::bf16}};
  std::map<std::string, std::unique_ptr<model::LlamaModel>> models;
  for (const auto& [name, dtype] : caches) {
    models[name] = model::LlamaModel::load(
        model::RandomWeights(bench::llama_155m_config(), 1, 0.02f),
        {.dtype = tensor::DType::bf16, .pack_for_inference = true, .kv_cache = dtype});
  }
  std::printf("| sequences | cache | decode t/s | vs f32 cache |\n|---|---|---|---|\n");
  for (int sequences : {1, 16}) {
    std::map<std::string, double> best;
    for (int round = 0; round < rounds; ++round) {
      for (const auto& [name, dtype] : caches) {
        const double t65 = generate_seconds(*models[name], sequences, prompt, 65);
        const double t1 = generate_seconds(*models[name], sequences, prompt, 1);
        const double rate = 64.0 * sequences / std::max(t65 - t1, 1e-9);
        best[name] = std::max(best[name], rate);
      }
    }
    for (const auto& [name, dtype] : caches)
      std::printf("| %d | %s | %.1f | %.2fx |\n", sequences, name, best[name],
                  best[name] / best["f32"]);
  }
  return 0;
}

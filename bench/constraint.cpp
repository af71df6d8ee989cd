// Constrained decoding overhead: the 155.7M Llama (random weights, packed for inference, bf16 and
// f32) with the Llama-2 32k vocabulary decodes 1 and 16 sequences with a judge-sized JSON schema
// and without one; the table gives the time per generated token of each and the constrained share.
// "cold" is the first constrained run of a fresh constraint (every automaton state met computes its
// token mask: a walk of the 32k-token trie); "warm" repeats it with the masks cached, which is what
// a server or pipeline sending the same schema again sees.
//
// Usage: bench_constraint [--threads N] [--tokens N]
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench_models.h"
#include "bench_util.h"
#include "infer/constraint.h"
#include "infer/engine.h"
#include "model/llama.h"
#include "model/random_weights.h"
#include "tensor/calibrate.h"
#include "tensor/threading.h"
#include "tokenizer/tokenizer.h"

using namespace seqit;
using Clock = std::chrono::steady_clock;

namespace {

const char* kJudgeSchema = R"({
  "type": "object",
  "properties": {
    "subtasks": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 5},
    "followed": {"type": "array", "items": {"type": "boolean"}, "maxItems": 5},
    "all_in_order": {"enum": ["yes", "no"]},
    "quality": {"type": "integer"},
    "reason": {"type": "string", "maxLength": 200}
  },
  "required": ["subtasks", "followed", "all_in_order", "quality", "reason"],
  "additionalProperties": false
})";

std::filesystem::path shared_data() {
  const char* env = std::getenv("SEQIT_SHARED_DATA");
  return env && *env ? std::filesystem::path(env)
                     : std::filesystem::path(SEQIT_SHARED_DATA_DEFAULT);
}

struct Run {
  double seconds = 0, mask_seconds = 0;
  int64_t tokens = 0;
  int complete = 0;
  double ms_per_token() const { return tokens ? 1e3 * seconds / static_cast<double>(tokens) : 0; }
};

// `sequences` requests decoded together, `tokens` new tokens each (unconstrained: EOS ignored);
// the constrained ones end when the JSON is complete (at most `tokens`).
// `engine`'s token trie (and so the constraint's cached masks) lives as long as the engine: the
// warm run reuses the engine of the cold one, as a server's single engine does.
Run run(infer::Engine& engine, const tokenizer::Tokenizer& tok,
        std::shared_ptr<const infer::Constraint> c, int sequences, int tokens) {
  std::vector<infer::GenerationRequest> requests;
  for (int i = 0; i < sequences; ++i) {
    infer::GenerationRequest r;
    r.prompt = tok.encode(fmt::format("Judge answer {}: did it follow every step?", i));
    r.sampling.temperature = 1.0f;
    r.sampling.seed = static_cast<uint64_t>(i);
    r.stop.max_new_tokens = tokens;
    r.stop.ignore_eos = !c;
    r.constraint = c;
    requests.push_back(std::move(r));
  }
  const auto t0 = Clock::now();
  const double mask0 = engine.constraint_seconds();
  const auto results = engine.generate(std::move(requests));
  Run out;
  out.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  out.mask_seconds = engine.constraint_seconds() - mask0;
  for (const auto& r : results) {
    out.tokens += static_cast<int64_t>(r.tokens.size());
    if (c && c->matches(r.text)) ++out.complete;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  tensor::establish_openmp_wait_policy(argv);
  int threads = 2, tokens = 96;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else if (a == "--tokens" && i + 1 < argc) {
      tokens = std::atoi(argv[++i]);
    } else {
      std::printf(
          "usage: bench_constraint [--threads N] [--tokens N]\n"
          "Time per generated token with and without a judge-sized JSON schema constraint, 1 and "
          "16 sequences, on the 155.7M Llama with a 32k vocabulary.\n");
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  tensor::set_num_threads(threads);
  const auto tok =
      tokenizer::load_tokenizer(shared_data() / "tokenizers/llama2/llama2c_tokenizer.bin");
  std::printf("bench_constraint: %d threads; cpu: %s; tokenizer %s\n", threads,
              tensor::cpu_features().c_str(), tok->describe().c_str());
  auto t0 = Clock::now();
  infer::TokenTrie trie(*tok);
  const double trie_ms = 1e3 * std::chrono::duration<double>(Clock::now() - t0).count();
  t0 = Clock::now();
  auto probe = infer::Constraint::json_schema(nlohmann::ordered_json::parse(kJudgeSchema));
  const double compile_ms = 1e3 * std::chrono::duration<double>(Clock::now() - t0).count();
  t0 = Clock::now();
  size_t allowed_total = 0;
  for (int32_t s = 0; s < static_cast<int32_t>(probe->states()); ++s)
    allowed_total += probe->allowed(trie, s).size();
  const double masks_ms = 1e3 * std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf(
      "judge schema: %zu automaton states, compiled in %.1f ms; token trie of the 32k vocabulary "
      "%.1f ms; the token masks of all states %.1f ms (%.2f ms per state, %.0f tokens allowed on "
      "average)\n\n",
      probe->states(), compile_ms, trie_ms, masks_ms,
      masks_ms / static_cast<double>(probe->states()),
      static_cast<double>(allowed_total) / static_cast<double>(probe->states()));

  std::printf(
      "| model | sequences | unconstrained ms/token | constrained cold | constrained warm | "
      "masking "
      "cold | masking warm | complete |\n|---|---|---|---|---|---|---|---|\n");
  for (auto dtype : {tensor::DType::bf16, tensor::DType::f32}) {
    auto m = model::LlamaModel::load(model::RandomWeights(bench::llama_155m_config(), 1, 0.02f),
                                     {.dtype = dtype, .pack_for_inference = true});
    for (int sequences : {1, 16}) {
      infer::Engine engine(*m, tok.get(), {.max_batch = sequences});
      run(engine, *tok, nullptr, sequences, 8);  // warm-up: caches, threads, primitives
      const Run plain = run(engine, *tok, nullptr, sequences, tokens);
      auto c = infer::Constraint::json_schema(nlohmann::ordered_json::parse(kJudgeSchema));
      const Run cold = run(engine, *tok, c, sequences, tokens);
      const Run warm = run(engine, *tok, c, sequences, tokens);
      const Run plain2 = run(engine, *tok, nullptr, sequences, tokens);
      const double base = std::min(plain.ms_per_token(), plain2.ms_per_token());
      // The masking time per generated token against the unconstrained time per token.
      auto share = [&](const Run& r) {
        const double us =
            1e6 * r.mask_seconds / static_cast<double>(std::max<int64_t>(r.tokens, 1));
        return fmt::format("{:.0f} us = {:.1f}%", us, 100 * us / (1e3 * base));
      };
      std::printf("| %s | %d | %.2f (%.2f) | %.2f | %.2f | %s | %s | %d/%d |\n",
                  std::string(tensor::dtype_name(dtype)).c_str(), sequences, base,
                  std::max(plain.ms_per_token(), plain2.ms_per_token()), cold.ms_per_token(),
                  warm.ms_per_token(), share(cold).c_str(), share(warm).c_str(), warm.complete,
                  sequences);
    }
  }
  std::printf(
      "\nms/token: wall time / tokens generated by all sequences (16 sequences: per token of the "
      "batch). Unconstrained: the better of two runs around the constrained ones (the other in "
      "parentheses). masking: the engine's time building constrained rows (token masks, a "
      "state's first mask included) per generated token, and its share of the unconstrained time "
      "per token — the overhead, measured directly (the end-to-end times differ by more than it "
      "between identical runs on a shared VM). complete: warm answers that match the schema.\n");
  return 0;
}

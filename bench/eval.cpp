// Evaluation speed on the local backend (issue 15's targets), on the 155.7M Llama of bench_model
// (hidden 1024, 8 layers, 16/4 heads, ffn 2816, vocab 32000, random weights; the Llama-2
// tokenizer), in the same run:
//  1. Generation: GSM8K prompts (1-shot, raw completions) answered through `seqit eval`'s runner
//     and the local backend, vs the same prompts through `seqit generate`'s job (infer's
//     GenerateJob, 16 sequences per batch both). Same greedy tokens, so generated tokens/s compare
//     directly. Target: eval >= 0.8x generate.
//  2. Log-likelihood: MMLU (5-shot, four continuations " A".." D" per question) scored through the
//     runner and the local backend, in tokens of the questions per second (each prompt counted
//     once, plus each continuation's own tokens), vs a 512-token prefill of the same model (what
//     bench_model's prefill row measures). Target: >= 0.8x prefill.
// Rounds alternate the two sides of each comparison; the best round of each is kept.
//
//   bench_eval [--threads N] [--quick] [--dtype f32|bf16|both] [--items N] [--tokens N]
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench_models.h"
#include "bench_util.h"
#include "eval/runner.h"
#include "eval/tasks.h"
#include "infer/generate_job.h"
#include "llm/local_backend.h"
#include "model/llama.h"
#include "model/random_weights.h"
#include "tensor/calibrate.h"
#include "tensor/ops.h"
#include "tensor/threading.h"
#include "tokenizer/tokenizer.h"
#include "util/log.h"
#include "util/progress.h"

namespace {
using namespace seqit;
namespace fs = std::filesystem;
using bench::now_seconds;

fs::path shared_data() {
  const char* env = std::getenv("SEQIT_SHARED_DATA");
  return env && *env ? fs::path(env) : fs::path(SEQIT_SHARED_DATA_DEFAULT);
}

struct Settings {
  int threads = 2;
  int rounds = 2;
  int items = 32;            // GSM8K prompts
  int tokens = 48;           // new tokens per prompt
  int mmlu_per_subject = 4;  // MMLU questions per subject (8 subjects)
};

const char* const kMmluSubjects[] = {"abstract_algebra", "anatomy",      "astronomy",
                                     "college_biology",  "econometrics", "marketing",
                                     "philosophy",       "virology"};

// 512 tokens of one sequence, logits of the last only (bench_model's prefill row).
double prefill_tokens_per_second(const model::LlamaModel& m) {
  model::ForwardWorkspace ws;
  tensor::Tensor logits = tensor::Tensor::empty({1, m.config().vocab_size}, tensor::DType::f32);
  std::vector<int32_t> prompt(512);
  for (int i = 0; i < 512; ++i) prompt[i] = (i * 7919 + 13) % 32000;
  double best = 1e9;
  for (int rep = 0; rep < 4; ++rep) {
    model::KvCache cache = m.new_cache();
    model::ForwardBatch b;
    b.tokens = prompt;
    b.chunks = {{&cache, 512}};
    b.logit_rows = {511};
    const double t0 = now_seconds();
    m.forward(b, logits, ws);
    if (rep > 0) best = std::min(best, now_seconds() - t0);
  }
  return 512 / best;
}

struct GenerationRun {
  double seconds = 0;
  int64_t tokens = 0;
};

GenerationRun through_generate(const std::shared_ptr<const model::LlamaModel>& m,
                               const std::shared_ptr<const tokenizer::Tokenizer>& tok,
                               const eval::Task& task, const fs::path& dir, int max_tokens) {
  infer::GenerateJobOptions job;
  job.prompts = dir / "prompts.jsonl";
  job.out = dir / "generate.jsonl";
  job.fresh = true;
  job.sampling.temperature = 0;
  job.stop.max_new_tokens = max_tokens;
  job.engine.max_batch = 16;
  {
    std::ofstream out(job.prompts);
    for (size_t i = 0; i < task.size(); ++i) {
      const llm::Request r = task.requests(i).at(0);
      nlohmann::json row = {{"id", static_cast<int64_t>(i)},
                            {"prompt", r.prompt},
                            {"max_tokens", max_tokens},
                            {"stop", r.params.stop}};
      out << row.dump() << "\n";
    }
  }
  const double t0 = now_seconds();
  const infer::GenerateJobStats stats =
      infer::run_generate_job(*m, *tok, job, infer::text_prompt_builder(*tok));
  return {now_seconds() - t0, stats.tokens};
}

GenerationRun through_eval(const std::shared_ptr<const model::LlamaModel>& m,
                           const std::shared_ptr<const tokenizer::Tokenizer>& tok,
                           const eval::Task& task, const fs::path& dir) {
  llm::LocalBackendOptions lo;
  lo.model_name = "llama-155m-random";
  lo.max_batch = 16;
  llm::LocalBackend backend(m, tok, lo);
  eval::RunOptions run;
  run.max_in_flight = 64;  // what `seqit eval` keeps in flight for 16 sequences per batch
  run.fresh = true;
  run.config = "bench";
  const double t0 = now_seconds();
  const eval::RunResult result = eval::run_task(backend, task, dir / "results.jsonl", run);
  const double took = now_seconds() - t0;
  if (!result.complete) std::fprintf(stderr, "eval run incomplete\n");
  return {took, backend.stats().generated_tokens};
}

// Tokens of one scoring request as work: the prompt once, then each continuation's tokens beyond
// what it shares with the first (prompt + continuation 0).
int64_t question_tokens(const tokenizer::Tokenizer& tok, const llm::Request& r) {
  tokenizer::EncodeOptions o;
  o.add_special = true;
  std::vector<std::vector<tokenizer::TokenId>> ids;
  for (const auto& c : r.continuations) ids.push_back(tok.encode(r.prompt + c, o));
  int64_t n = static_cast<int64_t>(ids.at(0).size());
  for (size_t c = 1; c < ids.size(); ++c) {
    size_t common = 0;
    while (common < ids[c].size() && common < ids[0].size() && ids[c][common] == ids[0][common])
      ++common;
    n += static_cast<int64_t>(ids[c].size() - common);
  }
  return n;
}

void run_dtype(tensor::DType dtype, const Settings& s, const fs::path& tmp) {
  const auto m = std::shared_ptr<const model::LlamaModel>(
      model::LlamaModel::load(model::RandomWeights(bench::llama_155m_config(), 1, 0.02f),
                              {.dtype = dtype, .pack_for_inference = true}));
  const auto tok = std::shared_ptr<const tokenizer::Tokenizer>(
      tokenizer::load_tokenizer(shared_data() / "tokenizers/llama2/tokenizer.json"));
  const std::string name(tensor::dtype_name(dtype));

  // 1. Generation.
  eval::TaskOptions go;
  go.data_dir = (shared_data() / "eval").string();
  go.limit = s.items;
  go.shots = 1;
  go.chat = false;
  go.max_tokens = s.tokens;
  const auto gsm = eval::make_task("gsm8k", go);
  GenerationRun gen_best{1e9, 0}, eval_best{1e9, 0};
  int64_t gen_tokens = -1, eval_tokens = -1;
  (void)through_generate(m, tok, *gsm, tmp, s.tokens);  // warm-up (oneDNN primitives)
  for (int round = 0; round < s.rounds; ++round) {
    const GenerationRun g = through_generate(m, tok, *gsm, tmp, s.tokens);
    const GenerationRun e = through_eval(m, tok, *gsm, tmp);
    if (g.seconds < gen_best.seconds) gen_best = g;
    if (e.seconds < eval_best.seconds) eval_best = e;
    gen_tokens = g.tokens, eval_tokens = e.tokens;
  }
  const double gen_tps = gen_best.tokens / gen_best.seconds;
  const double eval_tps = eval_best.tokens / eval_best.seconds;
  std::printf(
      "%-46s %10.1f %10.1f %10.2fx %12s\n",
      fmt::format("{} generation, {} GSM8K prompts x {} tokens", name, gsm->size(), s.tokens)
          .c_str(),
      eval_tps, gen_tps, eval_tps / gen_tps, eval_tps / gen_tps >= 0.8 ? ">= 0.8 ok" : "< 0.8");
  if (gen_tokens != eval_tokens)
    std::printf("  (tokens differ: generate %lld, eval %lld: not the same greedy answers!)\n",
                static_cast<long long>(gen_tokens), static_cast<long long>(eval_tokens));

  // 2. Log-likelihood.
  eval::TaskOptions mo;
  mo.data_dir = (shared_data() / "eval").string();
  mo.limit = s.mmlu_per_subject;
  mo.shots = 5;
  for (const char* subject : kMmluSubjects) mo.groups.push_back(subject);
  const auto mmlu = eval::make_task("mmlu", mo);
  int64_t work = 0, request_tokens = 0, longest = 0;
  for (size_t i = 0; i < mmlu->size(); ++i) {
    const llm::Request r = mmlu->requests(i).at(0);
    work += question_tokens(*tok, r);
    tokenizer::EncodeOptions o;
    o.add_special = true;
    const auto n = static_cast<int64_t>(tok->encode(r.prompt + r.continuations[0], o).size());
    request_tokens += n * static_cast<int64_t>(r.continuations.size());
    longest = std::max(longest, n);
  }
  double prefill_best = 0, score_best = 1e9;
  (void)through_eval(m, tok, *mmlu, tmp);  // warm-up
  for (int round = 0; round < s.rounds; ++round) {
    prefill_best = std::max(prefill_best, prefill_tokens_per_second(*m));
    score_best = std::min(score_best, through_eval(m, tok, *mmlu, tmp).seconds);
  }
  const double score_tps = work / score_best;
  std::printf("%-46s %10.1f %10.1f %10.2fx %12s\n",
              fmt::format("{} MMLU scoring, {} questions (5-shot)", name, mmlu->size()).c_str(),
              score_tps, prefill_best, score_tps / prefill_best,
              score_tps / prefill_best >= 0.8 ? ">= 0.8 ok" : "< 0.8");
  std::printf(
      "  (%lld question tokens, mean %.0f per question, longest %lld; %.2f questions/s; "
      "counted per continuation as lm-eval does: %.1f tokens/s)\n",
      static_cast<long long>(work), static_cast<double>(work) / mmlu->size(),
      static_cast<long long>(longest), mmlu->size() / score_best, request_tokens / score_best);
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  std::string dtypes = "both";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc)
      s.threads = std::atoi(argv[++i]);
    else if (a == "--quick")
      s.rounds = 1, s.items = 16, s.tokens = 24, s.mmlu_per_subject = 1;
    else if (a == "--dtype" && i + 1 < argc)
      dtypes = argv[++i];
    else if (a == "--items" && i + 1 < argc)
      s.items = std::atoi(argv[++i]);
    else if (a == "--tokens" && i + 1 < argc)
      s.tokens = std::atoi(argv[++i]);
    else {
      std::printf(
          "usage: bench_eval [--threads N] [--quick] [--dtype f32|bf16|both] [--items N] "
          "[--tokens N]\n"
          "Evaluation on the local backend vs the engine's own rates, 155.7M Llama, same run:\n"
          "  generation: GSM8K through `seqit eval` vs the same prompts through `seqit generate`\n"
          "  scoring:    MMLU log-likelihood (question tokens/s) vs a 512-token prefill\n"
          "  --threads N  compute threads (default 2)\n"
          "  --quick      one round, 16 prompts x 24 tokens, 8 MMLU questions (default 32)\n"
          "  --dtype D    weights: f32, bf16 or both (default)\n"
          "  --items N    GSM8K prompts (default 32)\n"
          "  --tokens N   new tokens per prompt (default 48)\n");
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  if (dtypes != "f32" && dtypes != "bf16" && dtypes != "both") {
    std::fprintf(stderr, "bench_eval: --dtype must be f32, bf16 or both\n");
    return 2;
  }
  tensor::set_num_threads(s.threads);
  log::set_level(log::Level::warn);  // the jobs' own progress lines would break the table
  Progress::set_enabled(false);
  std::printf("bench_eval: Llama 155.7M (random weights, Llama-2 tokenizer), %d threads; %s\n",
              s.threads, tensor::cpu_features().c_str());
  std::printf("machine, measured now: fp32 FMA peak %.0f GFLOP/s; load average at start: %s\n",
              tensor::measure_fma_peak(s.threads).gflops, bench::load_average().c_str());
  std::printf("bf16 weights compute with %s activations\n\n",
              tensor::bf16_activations() == tensor::Bf16Activations::kBf16 ? "bf16" : "f32");
  std::printf("%-46s %10s %10s %11s %12s\n", "measure (tokens/s)", "seqit eval", "reference",
              "ratio", "target");
  const fs::path tmp = fs::temp_directory_path() / fmt::format("bench_eval-{}", getpid());
  fs::create_directories(tmp);
  if (dtypes != "bf16") run_dtype(tensor::DType::f32, s, tmp);
  if (dtypes != "f32") run_dtype(tensor::DType::bf16, s, tmp);
  fs::remove_all(tmp);
  std::printf(
      "\nreferences: generation = the same prompts through seqit generate's job (same greedy "
      "tokens);\nscoring = a 512-token prefill of the same model (bench_model's prefill row).\n"
      "load average at end: %s\n",
      bench::load_average().c_str());
  return 0;
}

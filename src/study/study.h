// `seqit study`: the paper's experiment — IT vs SIT vs token-matched IT (and SIT with corrupted
// intermediate steps) — on the synthetic world, as one resumable command.
//
//   world             the world's tokenizer and the small Llama's config.json
//   data              the arms' training sets, made by the real Seq-Instruct pipeline driven by the
//                     world's teacher (synth::Teacher): IT, SIT, IT token-matched, SIT corrupted
//   train-<arm>-s<k>  a model trained from scratch on the arm (same steps and batch for every arm)
//   eval-<arm>-s<k>   the model answers the held-out chains (lengths 1..5); graded step by step
//   report            the comparison (study/report.h): recomputed from the eval results every run
//
// Each stage is cached by the hash of its settings and inputs (study/stage.h): a rerun after a
// crash or kill -9 redoes only what is not done, and training resumes from its last checkpoint.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "study/stage.h"
#include "synth/task.h"

namespace seqit::study {

struct StudySettings {
  std::string name = "default";
  uint64_t data_seed = 1;
  std::vector<uint64_t> seeds = {1, 2, 3};  // training seeds (each arm trained once per seed)
  std::vector<std::string> arms = {"it", "sit", "it_matched", "sit_corrupted"};
  // Data.
  // Source single-task items (IT and SIT are made from the same ones): enough that 8,000 steps
  // of 16 rows see each about 6 times (1,500 items are memorised: held-out accuracy 12%).
  int64_t items = 20000;
  int64_t pool_items = 0;  // the IT pool the token-matched arm is drawn from (at least 4 x items)
  int iterations = 2;      // Seq-Instruct passes
  // The world's inputs (synth::InputShape): the English/Vellan words drawn from (0: all 66), the
  // words, numbers and facts per input [min, max], the largest number. Smaller than synth's own
  // default (3-8 words of 66, 2-5 numbers in 0..19, 2-4 facts), which small models do not learn in
  // minutes (docs/study.md, "Calibration").
  int lexicon = 20;
  std::vector<int> input_words = {2, 4}, input_numbers = {2, 2}, input_facts = {2, 3};
  int max_number = 9;
  double corrupt_rate =
      0.5;  // sit_corrupted: share of responses whose intermediate steps are wrong
  // Evaluation: held-out chains of each length 1..eval_max_steps.
  int64_t eval_per_length = 100;
  int eval_max_steps = 5;
  int eval_max_tokens = 96;
  // The model: "scratch" (a small Llama from random weights with the world's tokenizer, sized by
  // hidden..context), "stories260K" (the pretrained tiny Llama in $SEQIT_SHARED_DATA or
  // ../shared/data, with its own tokenizer), or the path of any pretrained model (HF folder, GGUF
  // or llama2.c .bin; base_tokenizer names its tokenizer when the model holds none).
  std::string base = "scratch";
  std::string base_tokenizer;
  // 8 heads of 8 dimensions: more heads find the copying (induction) circuit sooner.
  int64_t hidden = 64, layers = 3, heads = 8, kv_heads = 8, ffn = 172, context = 192;
  // 8,000 steps at lr 1.5e-3: IT gate 82% over 3 seeds (9,000: 83-85%, 6,000: 71-80%; 12,000 at
  // 3e-3: 81-84%), about 10 minutes on 2 cores (docs/study.md, "Calibration").
  int64_t steps = 8000, micro_batch = 16, max_len = 160;
  double lr = 1.5e-3, warmup_ratio = 0.05;
  int threads = 0;  // compute threads of the whole study; 0: every core
  // Training/evaluation jobs (one arm and seed each) run at once, each on threads/jobs threads;
  // 0: as many as there are threads (a small model keeps one core busy far better than two, so two
  // jobs of one thread each finish ~1.8x sooner than one after the other). Results do not depend on
  // it: every run is bit-identical whatever the jobs and threads.
  int jobs = 0;

  synth::InputShape input_shape() const;
  static StudySettings quick();  // one seed, two arms, a smaller everything: for CI (< 2 min)
  nlohmann::json to_json() const;
  // Applies key=value overrides (e.g. "steps=200", "seeds=[1,2]"); throws naming the key.
  void apply(const std::vector<std::string>& overrides);
};

struct StudyProgress {
  std::function<void(const std::string& stage, const std::string& what)> stage_started;
  bool bars = true;  // progress bars inside stages
};

struct StudyResult {
  std::filesystem::path report_dir;
  std::string verdict;
  bool meaningful = false;
};

StudyResult run_study(const std::filesystem::path& out, const StudySettings& settings,
                      const StudyProgress& progress = {});

// The stages of the last run planned in `out`, each with its state.
std::vector<StageInfo> study_status(const std::filesystem::path& out);

}  // namespace seqit::study

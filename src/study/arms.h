// The training data of the study's arms, built on the synthetic world through the real Seq-Instruct
// pipeline (seqinstruct::run_pipeline) with the world's teacher (synth::Teacher) as the generator:
//
//   it             direct-response mode (the IT baseline) on `items` single-task items
//                  (synth::make_it_items(seed, items)): the original instructions, responses from
//                  the teacher
//   sit            SIT mode (`iterations` passes, default 2) on the same items: classify A/B/C/D,
//                  rewrite, regenerate the response
//   it_matched     IT items taken in order from a larger pool (make_it_items(seed, items *
//                  pool_factor), run in direct-response mode; its first `items` are the `it` arm)
//                  until their response tokens reach the sit arm's within `token_tolerance`
//   sit_corrupted  the sit arm's run with a teacher that corrupts each intermediate "Step k:" line
//                  with probability `corrupt` (same seeds, so the same instructions as sit)
//
// Tokens are counted with the tokenizer given (the world tokenizer: synth/world_tokenizer.h),
// without BOS/EOS. The pipelines' traces go to `work_dir` and are resumed when they are there (a
// trace of other settings is refused; `fresh` starts over).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "data/record.h"
#include "synth/task.h"
#include "tokenizer/tokenizer.h"

namespace seqit::study {

struct ArmOptions {
  uint64_t seed = 1;
  int64_t items = 1000;     // sources of the it and sit arms
  int64_t pool_factor = 4;  // the token-matched arm's pool: items * pool_factor IT items
  int iterations = 2;       // SIT passes
  double corrupt = 0.5;     // sit_corrupted: probability per intermediate step
  double token_tolerance = 0.02;
  synth::InputShape shape;         // of the source items' inputs
  std::filesystem::path work_dir;  // required: the pipelines' traces
  bool fresh = false;
};

struct Arm {
  std::string name;  // "it", "sit", "it_matched", "sit_corrupted"
  // In source order. meta: synth_chain / synth_steps describe the final instruction's chain;
  // the SIT arms add sit_options ("BD": the option of each pass) and synth_corrupted_steps.
  std::vector<data::Instruction> records;
  int64_t response_tokens = 0;                   // the outputs' tokens
  int64_t prompt_tokens = 0;                     // instruction + " " + input
  std::map<int64_t, int64_t> steps;              // chain length -> records
  std::vector<std::map<char, int64_t>> options;  // SIT arms: per pass, option -> items
};

struct Arms {
  Arm it, sit, it_matched, sit_corrupted;
};

Arms build_arms(const ArmOptions& options, const tokenizer::Tokenizer& tokenizer);

// How many leading entries of `tokens` to take so that their sum is as close as a prefix gets to
// `target`: the shortest prefix that reaches it, or the one before when that is closer. Throws
// seqit::Error when the pool does not reach the target or the closest sum is not within
// `tolerance` (relative) of it.
size_t token_matched_prefix(const std::vector<int64_t>& tokens, int64_t target, double tolerance);

}  // namespace seqit::study

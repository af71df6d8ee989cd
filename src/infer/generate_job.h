// `seqit generate --prompts FILE.jsonl`: generation for every record of a JSONL file, many at a
// time through the engine, each result appended to a resumable JSONL output as soon as it finishes
// (so a rerun after a crash or Ctrl-C skips the ids already written and never duplicates a row).
//
// Input records: {"id": any (default: the record's 0-based index), "prompt": "text"} or, with a
// chat template, {"id": ..., "messages": [{"role": ..., "content": ...}, ...]}; optional per-record
// overrides: "max_tokens", "temperature", "top_k", "top_p", "min_p", "seed", "stop" (string or
// list). Output records: {"id", "output", "finish_reason", "prompt_tokens", "completion_tokens"}
// plus "token_ids" when asked; in the order requests finish (several processes: rank by rank).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "infer/engine.h"

namespace seqit::dist {
class Communicator;
}

namespace seqit::infer {

// The prompt of one input record as token ids; `standalone` tells whether the reply is read on its
// own (a chat answer). Throws seqit::Error (field named) for a record it cannot use.
using PromptBuilder =
    std::function<std::vector<TokenId>(const nlohmann::json& record, bool* standalone)>;

// The default builder: record["prompt"] encoded with the tokenizer's special tokens (e.g. BOS).
PromptBuilder text_prompt_builder(const tokenizer::Tokenizer& tokenizer);

struct GenerateJobOptions {
  std::filesystem::path prompts;
  std::filesystem::path out;
  bool fresh = false;        // start the output over instead of resuming
  bool include_ids = false;  // add "token_ids" to each output record
  SamplingParams sampling;   // defaults for every record
  StopParams stop;
  EngineOptions engine;
  // The processes sharing the job (null: dist::world(), several under mpirun): record i goes to
  // rank i mod N, each rank appends to "<out>.part-<rank>", and rank 0 merges the parts into `out`
  // when all are done — and, before starting, any parts a stopped run left, so a rerun (with any
  // number of processes) loses nothing and duplicates nothing.
  dist::Communicator* world = nullptr;
};

struct GenerateJobStats {
  int64_t written = 0;  // records generated in this run
  int64_t skipped = 0;  // already in the output (resumed)
  int64_t tokens = 0;   // tokens generated in this run
};

GenerateJobStats run_generate_job(const model::LlamaModel& model,
                                  const tokenizer::Tokenizer& tokenizer,
                                  const GenerateJobOptions& options,
                                  const PromptBuilder& build_prompt);

// Applies a record's overrides ("max_tokens", "temperature", ...) to `sampling` / `stop`.
void apply_record_overrides(const nlohmann::json& record, SamplingParams& sampling,
                            StopParams& stop);

}  // namespace seqit::infer

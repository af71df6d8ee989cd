// A request file run through a Backend (`seqit query`): JSONL in, JSONL out, resumable.
//
// Input, one request per line (extra keys are ignored):
//   {"id": 7, "messages": [{"role": "user", "content": "..."}], "temperature": 0, ...}   chat
//   {"id": "a", "prompt": "Once upon a time", "max_tokens": 64, "stop": ["\n"]}          completion
//   {"id": "b", "prompt": "The capital of France is", "continuations": [" Paris", " Rome"]}  score
// The sampling fields (temperature, top_p, top_k, max_tokens, stop, seed, n) and "model" override
// the job's defaults. A record without "id" gets its 0-based record number as id.
//
// Output, one line per answered request, in the order answers arrive:
//   {"id": 7, "text": "...", "finish_reason": "stop", "usage": {...}, "model": "...", "cached":
//   false} plus "choices": ["...", ...] when n > 1; for score: {"id", "logprobs": [...],
//   "token_counts": [...]}.
// A rerun appends only the ids missing from the output (ResumableJsonlWriter), and with a
// CachedBackend even a lost output re-sends nothing that was answered. Failed requests are not
// written, so a rerun retries them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

#include "llm/backend.h"

namespace seqit::llm {

struct RequestJobOptions {
  SamplingParams defaults;    // for records that do not set a field
  std::string model;          // for records without "model" (empty: the backend's default)
  bool fresh = false;         // start the output anew instead of resuming it
  bool stop_on_error = true;  // false: log failed and invalid records, go on, count them
  int max_outstanding = 512;  // requests submitted and not yet answered (bounds memory)
  // Called after each answer is written (for progress); from a backend thread.
  std::function<void()> on_progress;
};

struct RequestJobSummary {
  int64_t records = 0;       // requests in the input
  int64_t already_done = 0;  // found in the output from an earlier run: not asked again
  int64_t answered = 0;      // written in this run (cached ones included)
  int64_t cached = 0;        // of those, answered by the response cache
  int64_t failed = 0;        // the backend returned an error
  int64_t invalid = 0;       // records that are not a valid request
  Usage usage;               // tokens of the answers that were not cached
};

// Runs every request of `input` that `output` lacks. With stop_on_error, the first failure stops
// submitting, waits for requests in flight (their answers are kept) and throws seqit::Error naming
// the input file, line and id.
RequestJobSummary run_request_job(Backend& backend, const std::filesystem::path& input,
                                  const std::filesystem::path& output,
                                  const RequestJobOptions& options);

}  // namespace seqit::llm

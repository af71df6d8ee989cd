// The Seq-Instruct pipeline (SIT_SPEC §1): every item of an instruction dataset goes, through an
// llm::Backend, from its original instruction to a sequential one and a regenerated response.
//
//   [extract]      optional, once: a monolithic prompt -> instruction + input (§1.3)
//   per iteration (1..N):
//     classify     -> option A (decompose) / B (prefix task) / C (suffix task) / D (keep)   (§1.5)
//     generate     A/B/C only -> the new instruction (§1.6)
//     respond      the generator answers the current instruction (§1.8)
//   An item classified D freezes: later iterations copy it unchanged (§1.10).
//
// Direct-response mode (the IT baseline, §1.11) runs only `respond`, on the original instructions,
// so the IT and SIT sets differ only in their instructions.
//
// Robustness (§8): the input goes into every prompt exactly once and may be empty; a reply that
// does not parse is asked again with a new seed, up to `max_attempts` times, then the item is kept
// as D with the reason in its trace; multi-turn conversations have their first user turn rewritten
// and their first assistant turn regenerated, and every later turn is kept as it was.
//
// Running: many items are in flight at once (one request each), so the backend's concurrency or
// the local engine's continuous batching stays busy. Every finished item-iteration is appended to
// the trace (a ResumableJsonlWriter), so a killed run resumes where it stopped: finished
// iterations are read back, not asked again, and nothing is written twice. Request seeds depend
// only on (run seed, item, iteration, stage, attempt), so a rerun sends identical requests and a
// response cache in front of the backend answers whatever was asked before the kill.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "data/reader.h"
#include "data/record.h"
#include "llm/backend.h"
#include "seqinstruct/prompts.h"

namespace seqit::dist {
class Communicator;
}

namespace seqit::seqinstruct {

// One item of the source dataset, normalised (SIT_SPEC §1.1: {idx, instruction, input, output,
// system_prompt}).
struct SourceItem {
  std::string id;     // the record's id, or its 0-based index in the file when it has none
  int64_t index = 0;  // 0-based position in the source
  std::string system, instruction, input, output;
  data::Meta meta;
  // Multi-turn conversations: the turns after the first assistant reply, kept unchanged.
  bool conversation = false;
  std::vector<data::Message> later_turns;
};

struct LoadReport {
  data::Format format;
  int64_t items = 0;
  int64_t multi_turn = 0;  // conversations with turns after the first reply (kept unchanged)
  data::BadRecords bad;    // records skipped under --on-error skip
};

// Reads any data/ format (Alpaca, FLAN CoT, ShareGPT, OpenAI messages, LIMA, ...). A conversation
// needs a user turn (after an optional system turn); its first assistant turn is the output.
std::vector<SourceItem> load_source(const std::filesystem::path& path,
                                    const data::ReadOptions& options, LoadReport* report);
SourceItem to_source_item(const data::Record& record, int64_t index);

enum class Mode { sit, direct };

struct PipelineOptions {
  Mode mode = Mode::sit;
  int iterations = 2;          // the paper trains on the data after two passes (§1.10)
  bool extract_input = false;  // run the extraction stage first (FLAN-style prompts)
  uint64_t seed = 42;
  int max_attempts = 3;  // per parsed stage: the first try and the retries
  std::string model;     // empty: the backend's default
  // The reference's settings (§1.2): sampling T=1, top-p 0.9, top-k 50, up to 2048 tokens, for
  // classification, generation and responses; greedy extraction.
  llm::SamplingParams rewrite{1.0, 0.9, 50, 2048, {}, std::nullopt, 1};
  llm::SamplingParams respond{1.0, 0.9, 50, 2048, {}, std::nullopt, 1};
  llm::SamplingParams extract{0.0, 1.0, 50, 1024, {}, std::nullopt, 1};
  int max_in_flight = 64;
  // Send the classify stage's answer format (option_reply_pattern) as a regex response format: a
  // backend that enforces it (the local engine) cannot return an unparsable classification.
  bool constrained = false;
  bool stop_on_error = true;  // a backend error stops the run (after requests in flight finish)
  // Polled between replies: true stops starting new work; requests in flight finish and are
  // written (e.g. InterruptGuard::requested for Ctrl-C / SIGTERM).
  std::function<bool()> interrupted;
  // The processes sharing the run (null: dist::world(), several under mpirun): item i goes to rank
  // i mod N (trace.jsonl.part-<rank>, merged into the trace by rank 0); every rank returns every
  // item's result.
  dist::Communicator* world = nullptr;
};

// Counters, per stage and in all, for the progress bar and the report.
struct PipelineCounts {
  int64_t items = 0;
  int64_t items_done = 0;      // every iteration finished (or frozen)
  int64_t resumed = 0;         // item-iterations read back from an earlier run's trace
  int64_t requests = 0;        // answered in this run
  int64_t cached = 0;          // of those, from the response cache
  int64_t parse_retries = 0;   // replies that did not parse and were asked again
  int64_t parse_failures = 0;  // stages that never parsed (item kept as D, or original kept)
  int64_t backend_errors = 0;  // items that stopped on a backend error (not written; rerun retries)
  std::map<std::string, int64_t> stage_requests;  // "classify" -> n
};

// The state of one item after the run: what goes into the training file.
struct ItemResult {
  const SourceItem* source = nullptr;
  std::string instruction, input, output;
  std::vector<char> options;  // the option of each iteration that ran ('A'..'D')
  bool complete = false;      // every iteration finished (false: a backend error left it)
};

struct PipelineResult {
  std::vector<ItemResult> items;  // in source order
  PipelineCounts counts;          // this run
  // The whole trace, earlier runs included (requests, cached, per stage, retries, failures): what
  // the data went through, however many runs it took.
  PipelineCounts totals;
};

using ProgressCallback = std::function<void(const PipelineCounts&)>;

// Runs the pipeline over `items`, appending to `trace_path` (resuming it when it exists and
// `fresh` is false). Throws seqit::Error for a trace written by a different configuration.
PipelineResult run_pipeline(llm::Backend& backend, const PromptSet& prompts,
                            const std::vector<SourceItem>& items,
                            const std::filesystem::path& trace_path, const PipelineOptions& options,
                            bool fresh = false, const ProgressCallback& progress = {});

// The training record of an item: an Instruction, or a Conversation for multi-turn sources (first
// user turn and first reply replaced, later turns kept).
data::Record training_record(const ItemResult& item);

}  // namespace seqit::seqinstruct

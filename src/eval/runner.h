// Runs a Task through an llm::Backend: many items in flight at once (every request of an item is
// submitted together; replies come back on a completion queue, as in the Seq-Instruct pipeline),
// each finished item appended to results.jsonl (a ResumableJsonlWriter) the moment it is scored.
//
// results.jsonl: the first line is {"id": "#config", "task": ..., "config": ...}; a rerun with a
// different config is refused (start anew with `fresh`). Then one line per item:
//   {"id", "group", "scores": {...}, "answer_found", "fields": {...}, "replies": [...]}
// A killed run (Ctrl-C, kill -9) resumes: items already written are read back and not asked again,
// and nothing is written twice. A backend error leaves its item unwritten, so a rerun retries it.
//
// Several processes (mpirun): item i is run by rank i mod N, each rank appends to
// results.jsonl.part-<rank>, and rank 0 merges the parts into results.jsonl when every rank is done
// (and, before starting, any parts a stopped run left); every rank then returns the whole result.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "eval/task.h"
#include "llm/backend.h"

namespace seqit::dist {
class Communicator;
}

namespace seqit::eval {

struct RunCounts {
  int64_t items = 0;     // in the task
  int64_t done = 0;      // written, this run and earlier ones
  int64_t resumed = 0;   // read back from an earlier run
  int64_t requests = 0;  // answered in this run
  int64_t cached = 0;    // of those, by the response cache
  int64_t failed = 0;    // items that stopped on a backend error (not written)
};

struct RunOptions {
  int max_in_flight = 64;     // requests submitted and not yet answered
  bool fresh = false;         // truncate results.jsonl instead of resuming it
  bool stop_on_error = true;  // the first backend error stops the run (requests in flight finish)
  // Polled between replies: true stops starting new items; items in flight finish and are written.
  std::function<bool()> interrupted;
  // A description of everything that changes the answers (task options, backend, model); stored in
  // the #config line and compared on resume.
  std::string config;
  std::function<void(const RunCounts&)> progress;  // after each reply, on the runner's thread
  // The processes sharing the task (null: dist::world()).
  dist::Communicator* world = nullptr;
};

struct RunResult {
  std::vector<ItemResult> items;  // every written item, in task order (earlier runs included)
  RunCounts counts;
  bool complete = false;  // every item of the task is written
};

RunResult run_task(llm::Backend& backend, const Task& task,
                   const std::filesystem::path& results_path, const RunOptions& options);

// Reads results.jsonl (for reports and compare). Throws seqit::Error naming the file and line.
struct StoredResults {
  std::string task;
  std::string config;
  std::vector<ItemResult> items;  // in file order
};
StoredResults read_results(const std::filesystem::path& results_path);

}  // namespace seqit::eval

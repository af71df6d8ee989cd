// An evaluation task: where its items come from, the request(s) each item sends through
// llm::Backend, and how the reply(ies) become per-item scores. The runner (eval/runner.h) does the
// rest (many requests in flight, results.jsonl, resume, progress) and the report (eval/report.h)
// aggregates the per-item scores generically: the mean of every score with a 95% bootstrap CI,
// per group (subject, language, category) and the macro average over groups.
//
// A task is built from TaskOptions (eval/tasks.h: make_task) and loads its data then; every request
// depends only on the options and the item, so a rerun sends identical requests (a response cache
// answers them) and a resumed run scores the same way.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "llm/backend.h"

namespace seqit::eval {

// What the user chose; a task fills in its defaults for the fields left at -1.
struct TaskOptions {
  std::string data_dir;  // shared/data/eval
  int64_t limit = -1;    // the first N items (-1: all; per language/subject/category where the
                         // task has groups, so every group is represented)
  std::vector<std::string> groups;  // only these subjects/categories/languages (empty: all)
  int shots = -1;                   // exemplars per prompt (-1: the task's default)
  uint64_t seed = 1234;             // exemplar choice where the task samples, and sampling seeds
  int max_tokens = -1;              // new tokens per reply (-1: the task's default)
  bool chat = true;             // chat requests (the backend's chat template) or raw completions
  bool shots_as_turns = false;  // chat: each exemplar as its own user/assistant turn pair
  // A prompt budget in characters (0: none): exemplars are dropped from the last until the
  // prompt (chat: all message contents) fits; the report gives the mean shots kept. For models
  // with a small context (a request longer than the context fails its item).
  int64_t max_prompt_chars = 0;
  int samples = -1;         // HumanEval: samples per problem (-1: 20)
  double temperature = -1;  // sampling tasks (HumanEval): -1 = the task's default
  std::string model;        // sent with every request (empty: the backend's default)
  // MGSM's exemplars: "translated" (the default; questions in the item's language, held out from
  // the end of the test set, with the English worked answers of the same GSM8K problems) or
  // "english" (GSM8K training problems in English for every language).
  std::string mgsm_exemplars = "translated";
};

// Whether `group` is selected by options.groups (every group when that is empty).
bool group_selected(const TaskOptions& options, const std::string& group);

// One item's result, as results.jsonl stores it and the report reads it.
struct ItemResult {
  std::string id;
  std::string group;                          // "" when the task has no groups
  std::map<std::string, double> scores;       // metric -> this item's value (e.g. "strict_em" -> 1)
  bool answer_found = true;                   // false: no extractable answer in the reply
  std::map<std::string, std::string> fields;  // gold, extracted answers, ... (for reading)
  std::vector<std::string> replies;           // the raw replies (generation) or scores as text
};

// A main metric of a task: shown first in the report with its CI.
struct MetricSpec {
  std::string key;    // the score name in ItemResult::scores
  std::string label;  // "exact match (strict)"
};

class Task {
 public:
  virtual ~Task() = default;
  virtual std::string name() const = 0;
  // One line per setting, "key: value", for the report header (shots, prompt format, decoding,
  // extraction, truncation), besides what the runner knows (backend, chat, limit, seed).
  virtual std::map<std::string, std::string> settings() const = 0;
  virtual std::vector<MetricSpec> main_metrics() const = 0;
  // What a group is called in the report ("subject", "language", "category"); "" = no groups.
  virtual std::string group_label() const { return {}; }

  virtual size_t size() const = 0;
  virtual std::string item_id(size_t i) const = 0;  // unique within the task
  // The requests of item i (usually one; more for per-option scoring or several turns).
  virtual std::vector<llm::Request> requests(size_t i) const = 0;
  // More requests for item i once every reply so far is in (`responses`, in the order asked),
  // e.g. a judge reply that did not parse, asked again with a new seed; `round` counts the calls
  // (0 after requests(i)). Empty (the default): the item is scored.
  virtual std::vector<llm::Request> follow_up(size_t i, const std::vector<llm::Response>& responses,
                                              int round) const {
    (void)i, (void)responses, (void)round;
    return {};
  }
  // Scores item i from all its responses: those of requests(i), then those of each follow_up.
  // Deterministic in the responses, so a follow-up's replies can be told apart by recomputing
  // which follow-ups were asked.
  virtual ItemResult score(size_t i, const std::vector<llm::Response>& responses) const = 0;
  // Whole-run numbers that are not means of per-item scores (e.g. a length-controlled win rate),
  // for the report; from the scored items (earlier runs included). Default: none.
  virtual std::map<std::string, double> aggregate(const std::vector<ItemResult>& items) const {
    (void)items;
    return {};
  }
};

// A seed for one request: a hash of (run seed, task, item, request index), so sampling does not
// depend on the order in which requests are sent.
uint64_t request_seed(uint64_t seed, std::string_view task, std::string_view item, size_t index);

}  // namespace seqit::eval

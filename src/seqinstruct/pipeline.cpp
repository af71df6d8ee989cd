#include "seqinstruct/pipeline.h"

#include <fmt/format.h>

#include <condition_variable>
#include <deque>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "dist/shards.h"
#include "seqinstruct/parse.h"
#include "util/error.h"
#include "util/jsonl_writer.h"
#include "util/log.h"

namespace seqit::seqinstruct {

using json = nlohmann::ordered_json;

// ---- Source
// ---------------------------------------------------------------------------------------

SourceItem to_source_item(const data::Record& record, int64_t index) {
  SourceItem item;
  item.index = index;
  item.id = data::record_id(record).empty() ? std::to_string(index) : data::record_id(record);
  item.meta = data::record_meta(record);
  if (const auto* ins = std::get_if<data::Instruction>(&record)) {
    item.system = ins->system;
    item.instruction = ins->instruction;
    item.input = ins->input;
    item.output = ins->output;
    return item;
  }
  const auto& conv = std::get<data::Conversation>(record);
  item.conversation = true;
  size_t i = 0;
  if (i < conv.messages.size() && conv.messages[i].role == data::kRoleSystem)
    item.system = conv.messages[i++].content;
  if (i >= conv.messages.size() || conv.messages[i].role != data::kRoleUser)
    throw Error("a conversation needs a user turn first (after an optional system turn)")
        .in_field("messages");
  item.instruction = conv.messages[i++].content;
  // A user turn stored from an Instruction keeps its input apart (data::split_user_prompt).
  std::tie(item.instruction, item.input) = data::split_user_prompt(item.instruction, item.meta);
  if (i < conv.messages.size() && conv.messages[i].role == data::kRoleAssistant)
    item.output = conv.messages[i++].content;
  for (; i < conv.messages.size(); ++i) item.later_turns.push_back(conv.messages[i]);
  return item;
}

std::vector<SourceItem> load_source(const std::filesystem::path& path,
                                    const data::ReadOptions& options, LoadReport* report) {
  std::vector<SourceItem> items;
  LoadReport local;
  LoadReport& r = report ? *report : local;
  const data::ReadReport read =
      data::read_records(path, options, [&](data::Record&& record, const ErrorContext& where) {
        try {
          items.push_back(to_source_item(record, static_cast<int64_t>(items.size())));
          if (!items.back().later_turns.empty()) ++r.multi_turn;
        } catch (Error& e) {
          e.add_context(where);
          if (options.on_error == data::OnError::stop) throw;
          r.bad.add(e);
        }
      });
  r.format = read.format;
  r.items = static_cast<int64_t>(items.size());
  r.bad.count += read.bad.count;
  for (const auto& e : read.bad.first) r.bad.first.push_back(e);
  // Ids must be unique: the trace is keyed by them.
  std::unordered_map<std::string, int64_t> seen;
  for (const auto& item : items) {
    auto [it, fresh] = seen.emplace(item.id, item.index);
    if (!fresh)
      throw Error(fmt::format("duplicate id '{}' (also record {}): ids identify items in the trace",
                              item.id, it->second))
          .in_file(path.string())
          .at_record(item.index);
  }
  return items;
}

// ---- Training records -------------------------------------------------------------------------

data::Record training_record(const ItemResult& item) {
  const SourceItem& src = *item.source;
  if (!src.conversation) {
    data::Instruction out;
    out.id = src.id == std::to_string(src.index) ? std::string() : src.id;
    out.system = src.system;
    out.instruction = item.instruction;
    out.input = item.input;
    out.output = item.output;
    out.meta = src.meta;
    return out;
  }
  data::Conversation out;
  out.id = src.id == std::to_string(src.index) ? std::string() : src.id;
  out.meta = src.meta;
  out.meta.erase(data::kInputMetaKey);
  if (!src.system.empty()) out.messages.push_back({"system", src.system, {}});
  out.messages.push_back({"user", join_prompt(item.instruction, item.input), {}});
  out.messages.push_back({"assistant", item.output, {}});
  for (const auto& turn : src.later_turns) out.messages.push_back(turn);
  return out;
}

// ---- The run
// --------------------------------------------------------------------------------------
namespace {

json messages_json(const std::vector<llm::Message>& messages) {
  json out = json::array();
  for (const auto& m : messages) out.push_back({{"role", m.role}, {"content", m.content}});
  return out;
}

json params_json(const llm::SamplingParams& p) {
  return {{"temperature", p.temperature},
          {"top_p", p.top_p},
          {"top_k", p.top_k},
          {"max_tokens", p.max_tokens},
          {"stop", p.stop}};
}

// What identifies a run's configuration: a trace written under another one cannot be resumed.
// The iteration count is left out on purpose: raising it continues a finished run.
json config_json(const PromptSet& prompts, const PipelineOptions& o) {
  json c = {{"mode", o.mode == Mode::sit ? "sit" : "direct"},
            {"seed", o.seed},
            {"extract_input", o.extract_input},
            {"max_attempts", o.max_attempts},
            {"model", o.model},
            {"prompts", prompts.name},
            {"rewrite", params_json(o.rewrite)},
            {"respond", params_json(o.respond)},
            {"extract", params_json(o.extract)}};
  // Only when on, so that traces written before the option existed still resume.
  if (o.constrained) c["answer_format"] = "constrained";
  return c;
}

// Adds a finished item-iteration's calls to `totals`.
void tally(const json& record, PipelineCounts& totals) {
  for (const auto& call : record.at("calls")) {
    if (call.contains("skipped") || !call.contains("reply")) continue;
    ++totals.requests;
    ++totals.stage_requests[call.at("stage").get<std::string>()];
    if (call.value("cached", false)) ++totals.cached;
    if (call.value("attempt", 0) > 0) ++totals.parse_retries;
  }
  if (record.value("status", "") == "parse_failed") ++totals.parse_failures;
}

enum class Stage { extract, classify, generate, respond };
const char* stage_name(Stage s) {
  switch (s) {
    case Stage::extract:
      return "extract";
    case Stage::classify:
      return "classify";
    case Stage::generate:
      return "generate";
    case Stage::respond:
      return "respond";
  }
  return "?";
}

struct ItemState {
  std::string instruction, input, output;
  std::vector<char> options;
  int next_iteration = 1;  // the next iteration to run
  bool extracted = false;  // extraction done (or not asked for)
  bool frozen = false;     // classified D: no more iterations
  bool failed = false;     // a backend error stopped it in this run
};

// One item-iteration in flight.
struct Task {
  size_t item = 0;
  int iteration = 0;  // 0 = extraction
  Stage stage = Stage::classify;
  int attempt = 0;
  std::string instruction_before, input_before;
  std::string full_prompt;  // classify/generate slot: instruction + input, input exactly once
  char option = 0;
  std::string status = "ok", reason;
  std::string new_instruction, new_input;
  json calls = json::array();
};

struct Completion {
  size_t task;
  llm::Result<llm::Response> result;
};

class Runner {
 public:
  Runner(llm::Backend& backend, const PromptSet& prompts, const std::vector<SourceItem>& items,
         const PipelineOptions& options, ResumableJsonlWriter& trace, PipelineCounts& counts,
         PipelineCounts& totals, const ProgressCallback& progress)
      : backend_(backend),
        prompts_(prompts),
        items_(items),
        o_(options),
        trace_(trace),
        counts_(counts),
        totals_(totals),
        progress_(progress),
        states_(items.size()) {}

  std::vector<ItemState>& states() { return states_; }

  void run() {
    size_t next = 0;
    std::optional<Error> first_error;
    for (;;) {
      stopping_ = first_error.has_value() || (o_.interrupted && o_.interrupted());
      while (!stopping_ && active_ < o_.max_in_flight && next < items_.size()) {
        const size_t i = next++;
        if (!mine_.empty() && !mine_[i]) continue;  // another rank's
        if (!start_next(i)) finish_item(i);
      }
      if (active_ == 0) break;
      Completion done = wait();
      try {
        handle(done);
      } catch (Error& e) {
        // Backend error: the item is left for a rerun.
        Task& task = tasks_.at(done.task);
        states_[task.item].failed = true;
        ++counts_.backend_errors;
        release(done.task);
        if (o_.stop_on_error && !first_error) first_error = e;
        if (!o_.stop_on_error) log::warn("{}", e.what());
      }
      if (progress_) progress_(counts_);
    }
    if (first_error) throw *first_error;
  }

 private:
  // Starts the next iteration of item i; false when the item has nothing left to do.
  bool start_next(size_t i) {
    ItemState& st = states_[i];
    if (st.failed || stopping_) return false;
    if (o_.extract_input && !st.extracted) {
      Task task = new_task(i, 0);
      task.stage = Stage::extract;
      submit(std::move(task));
      return true;
    }
    const int last = o_.mode == Mode::direct ? 1 : o_.iterations;
    if (st.frozen || st.next_iteration > last) return false;
    Task task = new_task(i, st.next_iteration);
    task.stage = o_.mode == Mode::direct ? Stage::respond : Stage::classify;
    submit(std::move(task));
    return true;
  }

  Task new_task(size_t i, int iteration) {
    const ItemState& st = states_[i];
    Task task;
    task.item = i;
    task.iteration = iteration;
    task.instruction_before = st.instruction;
    task.input_before = st.input;
    task.full_prompt = join_prompt(st.instruction, st.input);
    task.new_instruction = st.instruction;
    task.new_input = st.input;
    return task;
  }

  void submit(Task task) {
    llm::Request request;
    request.kind = llm::RequestKind::chat;
    request.model = o_.model;
    const SourceItem& src = items_[task.item];
    const uint64_t seed =
        request_seed(o_.seed, src.id, task.iteration, stage_name(task.stage), task.attempt);
    switch (task.stage) {
      case Stage::extract:
        request.messages = extract_messages(prompts_, task.full_prompt, seed);
        request.params = o_.extract;
        break;
      case Stage::classify:
        request.messages = classify_messages(prompts_, task.full_prompt, seed);
        request.params = o_.rewrite;
        if (o_.constrained) {
          request.response_format.kind = llm::ResponseFormat::Kind::regex;
          request.response_format.pattern = option_reply_pattern();
        }
        break;
      case Stage::generate:
        request.messages =
            generate_messages(prompts_, static_cast<Option>(task.option), task.full_prompt, seed);
        request.params = o_.rewrite;
        break;
      case Stage::respond:
        request.messages =
            respond_messages(src.system, join_prompt(task.new_instruction, task.new_input));
        request.params = o_.respond;
        break;
    }
    request.params.seed = seed;
    task.calls.push_back({{"stage", stage_name(task.stage)},
                          {"attempt", task.attempt},
                          {"seed", seed},
                          {"messages", messages_json(request.messages)}});
    size_t slot;
    if (!free_.empty()) {
      slot = free_.back();
      free_.pop_back();
      tasks_[slot] = std::move(task);
    } else {
      slot = tasks_.size();
      tasks_.push_back(std::move(task));
    }
    ++in_flight_[slot];
    if (in_flight_[slot] == 1) ++active_;
    backend_.submit(std::move(request), [this, slot](llm::Result<llm::Response> result) {
      std::lock_guard lock(mutex_);
      queue_.push_back({slot, std::move(result)});
      cv_.notify_one();
    });
  }

  // Re-submits the task in `slot` (next stage or retry) without releasing it.
  void resubmit(size_t slot) {
    Task task = std::move(tasks_[slot]);
    --in_flight_[slot];
    --active_;
    free_.push_back(slot);
    submit(std::move(task));
  }

  void release(size_t slot) {
    --in_flight_[slot];
    --active_;
    free_.push_back(slot);
  }

  Completion wait() {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return !queue_.empty(); });
    Completion c = std::move(queue_.front());
    queue_.pop_front();
    return c;
  }

  void handle(Completion& done) {
    Task& task = tasks_.at(done.task);
    const SourceItem& src = items_[task.item];
    if (!done.result.ok()) {
      throw Error(fmt::format("item '{}' (record {}), iteration {}, stage {}: {}", src.id,
                              src.index, task.iteration, stage_name(task.stage),
                              done.result.error().describe()));
    }
    const llm::Response& response = done.result.value();
    const std::string& reply = response.text();
    ++counts_.requests;
    ++counts_.stage_requests[stage_name(task.stage)];
    if (response.cached) ++counts_.cached;
    json& call = task.calls.back();
    call["reply"] = reply;
    call["finish_reason"] =
        response.choices.empty() ? std::string() : response.choices.front().finish_reason;
    call["cached"] = response.cached;
    call["model"] = response.model;
    call["usage"] = {{"prompt_tokens", response.usage.prompt_tokens},
                     {"completion_tokens", response.usage.completion_tokens}};

    switch (task.stage) {
      case Stage::extract: {
        const auto parsed = parse_extraction(reply);
        call["parsed"] = parsed.ok();
        call["how"] = parsed.how;
        if (!parsed.ok() && retry(done.task)) return;
        if (parsed.ok()) {
          task.new_instruction = parsed.value->instruction;
          // The extractor sees the instruction only when the source has a separate input (§8
          // item 5): that input is kept, never lost.
          task.new_input = task.input_before.empty()
                               ? parsed.value->input
                               : join_prompt(parsed.value->input, task.input_before);
        } else {
          task.status = "parse_failed";
          task.reason = "extract: " + parsed.how;
          ++counts_.parse_failures;
        }
        return finish_task(done.task);
      }
      case Stage::classify: {
        const auto parsed = parse_option(reply);
        call["parsed"] = parsed.ok() ? std::string(1, option_letter(*parsed.value)) : "";
        call["how"] = parsed.how;
        if (!parsed.ok() && retry(done.task)) return;
        if (!parsed.ok()) {
          task.option = 'D';
          task.status = "parse_failed";
          task.reason = "classify: " + parsed.how;
          ++counts_.parse_failures;
        } else {
          task.option = option_letter(*parsed.value);
        }
        task.attempt = 0;
        if (task.option == 'D') {
          // Kept: the first pass still regenerates the response, so every output comes from the
          // generator (as in the IT baseline); later passes keep the previous one.
          if (task.iteration == 1) {
            task.stage = Stage::respond;
            return resubmit(done.task);
          }
          task.calls.push_back({{"stage", "respond"}, {"skipped", "kept (D): previous response"}});
          return finish_task(done.task);
        }
        task.stage = Stage::generate;
        return resubmit(done.task);
      }
      case Stage::generate: {
        const auto parsed = parse_new_instruction(reply);
        call["parsed"] = parsed.ok() ? *parsed.value : std::string();
        call["how"] = parsed.how;
        if (!parsed.ok() && retry(done.task)) return;
        task.attempt = 0;
        if (!parsed.ok()) {
          task.status = "parse_failed";
          task.reason = fmt::format("generate ({}): {}", task.option, parsed.how);
          task.option = 'D';
          ++counts_.parse_failures;
          if (task.iteration > 1) {
            task.calls.push_back(
                {{"stage", "respond"}, {"skipped", "kept (D): previous response"}});
            return finish_task(done.task);
          }
        } else {
          task.new_instruction = *parsed.value;
          // The input goes in once: dropped when the new instruction already carries it (§1.9).
          task.new_input = input_in_instruction(task.new_instruction, task.input_before)
                               ? std::string()
                               : task.input_before;
        }
        task.stage = Stage::respond;
        return resubmit(done.task);
      }
      case Stage::respond: {
        task.calls.back()["parsed"] = true;
        ItemState& st = states_[task.item];
        st.output = reply;
        return finish_task(done.task, &response);
      }
    }
  }

  // Asks the same stage again with the next attempt's seed; false when attempts are used up.
  bool retry(size_t slot) {
    Task& task = tasks_[slot];
    if (task.attempt + 1 >= o_.max_attempts) return false;
    ++task.attempt;
    ++counts_.parse_retries;
    resubmit(slot);
    return true;
  }

  void finish_task(size_t slot, const llm::Response* response = nullptr) {
    (void)response;
    Task& task = tasks_[slot];
    ItemState& st = states_[task.item];
    const SourceItem& src = items_[task.item];
    json record;
    record["id"] = fmt::format("{}@{}", src.id, task.iteration);
    record["item"] = src.id;
    record["index"] = src.index;
    record["iteration"] = task.iteration;
    record["stage"] =
        task.iteration == 0 ? "extract" : (o_.mode == Mode::direct ? "direct" : "sit");
    record["instruction_before"] = task.instruction_before;
    record["input_before"] = task.input_before;
    if (task.iteration > 0 && o_.mode == Mode::sit) record["option"] = std::string(1, task.option);
    record["status"] = task.status;
    if (!task.reason.empty()) record["reason"] = task.reason;
    record["instruction"] = task.new_instruction;
    record["input"] = task.new_input;
    if (task.iteration > 0) record["output"] = st.output;
    record["calls"] = std::move(task.calls);
    trace_.append_line(record.dump(), record["id"].get<std::string>());
    tally(record, totals_);
    apply(st, record);
    release(slot);
    if (!start_next(task.item) && !stopping_) finish_item(task.item);
  }

 public:
  // Several processes: the items this rank runs (empty: all).
  void set_mine(std::vector<bool> mine) { mine_ = std::move(mine); }
  // Applies a finished item-iteration (from this run or read back from the trace) to the state.
  static void apply(ItemState& st, const json& record) {
    const int iteration = record.at("iteration").get<int>();
    st.instruction = record.at("instruction").get<std::string>();
    st.input = record.at("input").get<std::string>();
    if (iteration == 0) {
      st.extracted = true;
      return;
    }
    if (record.contains("output")) st.output = record.at("output").get<std::string>();
    st.next_iteration = iteration + 1;
    if (record.contains("option")) {
      const char option = record.at("option").get<std::string>().at(0);
      st.options.push_back(option);
      if (option == 'D') st.frozen = true;
    }
  }

 private:
  void finish_item(size_t i) {
    (void)i;
    ++counts_.items_done;
  }

  llm::Backend& backend_;
  const PromptSet& prompts_;
  const std::vector<SourceItem>& items_;
  const PipelineOptions& o_;
  ResumableJsonlWriter& trace_;
  PipelineCounts& counts_;
  PipelineCounts& totals_;
  const ProgressCallback& progress_;
  std::vector<ItemState> states_;
  std::vector<Task> tasks_;
  std::unordered_map<size_t, int> in_flight_;
  std::vector<size_t> free_;
  int active_ = 0;
  bool stopping_ = false;
  std::vector<bool> mine_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Completion> queue_;
};

}  // namespace

PipelineResult run_pipeline(llm::Backend& backend, const PromptSet& prompts,
                            const std::vector<SourceItem>& items,
                            const std::filesystem::path& trace_path, const PipelineOptions& options,
                            bool fresh, const ProgressCallback& progress) {
  if (options.iterations < 1) throw Error("iterations must be at least 1");
  if (options.max_attempts < 1) throw Error("max_attempts must be at least 1");
  if (options.max_in_flight < 1) throw Error("max_in_flight must be at least 1");
  const json config = config_json(prompts, options);

  // An earlier run's trace: its config line must match, its records are replayed.
  auto read_trace = [&] {
    std::vector<json> earlier;
    std::ifstream in(trace_path, std::ios::binary);
    std::string line;
    int64_t line_no = 0;
    while (std::getline(in, line)) {
      ++line_no;
      if (line.empty()) continue;
      json record;
      try {
        record = json::parse(line);
      } catch (const json::exception&) {
        if (in.peek() == EOF) break;  // a torn last line: the writer drops it
        throw Error("not JSON").in_file(trace_path.string()).at_line(line_no);
      }
      if (record.value("id", "") == "#config") {
        if (nlohmann::json(record.at("config")) != nlohmann::json(config))
          throw Error(
              fmt::format("this trace was written with other settings ({}); now: {}. Use a new "
                          "output folder, or --fresh to start over",
                          record.at("config").dump(), config.dump()))
              .in_file(trace_path.string())
              .at_line(line_no);
        continue;
      }
      earlier.push_back(std::move(record));
    }
    return earlier;
  };
  // Several processes (mpirun): item i is run by rank i mod N, which appends to
  // trace.jsonl.part-<rank>; rank 0 merges the parts into the trace when all are done and, before
  // starting, whatever parts a stopped run left. Every rank then holds every item's result.
  dist::Communicator& world = options.world ? *options.world : dist::world();
  const bool shared = world.size() > 1;
  const std::string config_line = json{{"id", "#config"}, {"config", config}}.dump();
  if (world.rank() == 0) {
    if (fresh) {
      remove_jsonl_parts(trace_path);
    } else if (!jsonl_parts(trace_path).empty()) {
      if (std::filesystem::exists(trace_path)) read_trace();  // the config check, before merging
      merge_jsonl_parts(trace_path);
    }
    if (shared) {
      ResumableJsonlWriter first(trace_path, "id", fresh);
      if (!first.has_id("#config")) first.append_line(config_line, "#config");
    }
  }
  if (shared) world.barrier();
  std::vector<json> earlier;
  if ((shared || !fresh) && std::filesystem::exists(trace_path)) earlier = read_trace();
  ResumableJsonlWriter trace(shared ? jsonl_part_path(trace_path, world.rank()) : trace_path, "id",
                             fresh || shared);
  if (!shared && !trace.has_id("#config")) trace.append_line(config_line, "#config");

  PipelineResult result;
  result.counts.items = static_cast<int64_t>(items.size());
  Runner runner(backend, prompts, items, options, trace, result.counts, result.totals, progress);
  if (shared) {
    std::vector<bool> mine(items.size());
    for (size_t i = 0; i < items.size(); ++i)
      mine[i] = dist::runs_item(world, static_cast<int64_t>(i));
    runner.set_mine(std::move(mine));
  }
  auto& states = runner.states();
  std::unordered_map<std::string, size_t> by_id;
  for (size_t i = 0; i < items.size(); ++i) {
    states[i].instruction = items[i].instruction;
    states[i].input = items[i].input;
    states[i].output = items[i].output;
    states[i].extracted = !options.extract_input;
    by_id.emplace(items[i].id, i);
  }
  // Replay in iteration order per item (the trace holds them in finishing order).
  std::unordered_set<std::string> replayed;
  auto replay = [&](std::vector<json>& records, bool resumed) {
    std::stable_sort(records.begin(), records.end(), [](const json& a, const json& b) {
      return a.at("iteration").get<int>() < b.at("iteration").get<int>();
    });
    for (const json& record : records) {
      auto it = by_id.find(record.at("item").get<std::string>());
      if (it == by_id.end()) continue;  // an item outside this run's --limit
      const std::string id = record.at("id").get<std::string>();
      if (!shared && !trace.has_id(id)) continue;
      if (!replayed.insert(id).second) continue;
      Runner::apply(states[it->second], record);
      tally(record, result.totals);
      if (resumed) ++result.counts.resumed;
    }
  };
  replay(earlier, true);
  runner.run();
  if (shared) {
    // Every part complete and merged; then the other ranks' new records, and the counts summed.
    trace.sync();
    for (const std::string& id : trace.ids()) replayed.insert(id);
    const PipelineCounts& c = result.counts;
    json mine = {{"items_done", c.items_done},
                 {"requests", c.requests},
                 {"cached", c.cached},
                 {"parse_retries", c.parse_retries},
                 {"parse_failures", c.parse_failures},
                 {"backend_errors", c.backend_errors},
                 {"stage_requests", c.stage_requests}};
    PipelineCounts sum;
    sum.items = c.items;
    sum.resumed = c.resumed;  // every rank read the same trace
    for (const std::string& text : world.allgather(mine.dump())) {
      const json r = json::parse(text);
      sum.items_done += r.at("items_done").get<int64_t>();
      sum.requests += r.at("requests").get<int64_t>();
      sum.cached += r.at("cached").get<int64_t>();
      sum.parse_retries += r.at("parse_retries").get<int64_t>();
      sum.parse_failures += r.at("parse_failures").get<int64_t>();
      sum.backend_errors += r.at("backend_errors").get<int64_t>();
      for (const auto& [stage, n] : r.at("stage_requests").items())
        sum.stage_requests[stage] += n.get<int64_t>();
    }
    result.counts = sum;
    dist::merge_parts(world, trace_path);
    std::vector<json> all = read_trace();
    replay(all, false);
  }

  const int last = options.mode == Mode::direct ? 1 : options.iterations;
  for (size_t i = 0; i < items.size(); ++i) {
    ItemResult r;
    r.source = &items[i];
    r.instruction = states[i].instruction;
    r.input = states[i].input;
    r.output = states[i].output;
    r.options = states[i].options;
    r.complete = !states[i].failed && states[i].extracted &&
                 (states[i].frozen || states[i].next_iteration > last);
    result.items.push_back(std::move(r));
  }
  return result;
}

}  // namespace seqit::seqinstruct

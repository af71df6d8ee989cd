#include "eval/runner.h"

#include <fmt/format.h>

#include <array>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <unordered_map>

#include "dist/shards.h"
#include "util/error.h"
#include "util/jsonl_writer.h"
#include "util/log.h"

namespace seqit::eval {
namespace fs = std::filesystem;
using json = nlohmann::json;

uint64_t request_seed(uint64_t seed, std::string_view task, std::string_view item, size_t index) {
  // FNV-1a over the parts, then a SplitMix64 finaliser.
  uint64_t h = 1469598103934665603ull ^ seed;
  auto mix = [&](std::string_view s) {
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
  };
  mix(task);
  mix(item);
  mix(std::to_string(index));
  h ^= h >> 30;
  h *= 0xBF58476D1CE4E5B9ull;
  h ^= h >> 27;
  h *= 0x94D049BB133111EBull;
  return (h ^ (h >> 31)) & 0x7fffffffffffffffull;  // servers take a signed 64-bit seed
}

namespace {

json to_json(const ItemResult& r) {
  json j;
  j["id"] = r.id;
  j["group"] = r.group;
  j["scores"] = r.scores;
  j["answer_found"] = r.answer_found;
  j["fields"] = r.fields;
  j["replies"] = r.replies;
  return j;
}

ItemResult from_json(const json& j) {
  ItemResult r;
  r.id = j.at("id").get<std::string>();
  r.group = j.value("group", std::string());
  r.scores = j.at("scores").get<std::map<std::string, double>>();
  r.answer_found = j.value("answer_found", true);
  if (j.contains("fields")) r.fields = j.at("fields").get<std::map<std::string, std::string>>();
  if (j.contains("replies")) r.replies = j.at("replies").get<std::vector<std::string>>();
  return r;
}

class Runner {
 public:
  Runner(llm::Backend& backend, const Task& task, const RunOptions& o)
      : backend_(backend), task_(task), o_(o) {}

  RunResult run(const fs::path& path) {
    dist::Communicator& world = o_.world ? *o_.world : dist::world();
    const bool shared = world.size() > 1;
    if (world.rank() == 0) {
      if (!path.parent_path().empty()) fs::create_directories(path.parent_path());
      // A config mismatch is checked before the writer may touch the file.
      if (!o_.fresh && fs::exists(path) && fs::file_size(path) > 0) check_config(path);
      if (o_.fresh) {
        remove_jsonl_parts(path);
      } else if (const int64_t moved = merge_jsonl_parts(path); moved > 0) {
        log::info("{}: {} items of a stopped run merged from its part files", path.string(), moved);
      }
      if (shared) {  // the results file with its #config line, before any rank reads it
        ResumableJsonlWriter first(path, "id", o_.fresh);
        if (!first.has_id("#config"))
          first.append({{"id", "#config"}, {"task", task_.name()}, {"config", o_.config}});
      }
    }
    if (shared) world.barrier();
    // Several processes: each appends to its own part; results.jsonl says what is done.
    ResumableJsonlWriter writer(shared ? jsonl_part_path(path, world.rank()) : path, "id",
                                o_.fresh || shared);
    const size_t n = task_.size();
    std::unordered_map<std::string, size_t> index;
    for (size_t i = 0; i < n; ++i) {
      if (!index.emplace(task_.item_id(i), i).second)
        throw Error(
            fmt::format("task {}: item id '{}' appears twice", task_.name(), task_.item_id(i)));
    }
    std::vector<std::optional<ItemResult>> results(n);
    auto read_back = [&] {
      int64_t found = 0;
      for (const ItemResult& r : read_results(path).items) {
        auto it = index.find(r.id);
        if (it != index.end() && !results[it->second]) {
          results[it->second] = r;
          ++found;
        }
      }
      return found;
    };
    if (shared || writer.resumed_records() > 0) counts_.resumed = read_back();
    if (!shared && !writer.has_id("#config"))
      writer.append({{"id", "#config"}, {"task", task_.name()}, {"config", o_.config}});
    if (shared) {  // this rank's items: i mod N
      for (size_t i = 0; i < n; ++i)
        mine_.push_back(dist::runs_item(world, static_cast<int64_t>(i)));
    }
    counts_.items = static_cast<int64_t>(n);
    counts_.done = counts_.resumed;
    if (o_.progress) o_.progress(counts_);

    std::optional<Error> first_error;
    size_t next = 0;
    try {
      loop(writer, results, first_error, next);
    } catch (...) {
      // The backend still holds callbacks into this runner: wait for every request in flight
      // before the exception leaves (and the runner with it).
      while (in_flight_ > 0) {
        wait();
        --in_flight_;
      }
      throw;
    }
    if (first_error) throw *first_error;
    if (shared) {
      // Every part complete, then merged by rank 0; every rank returns the whole result.
      writer.sync();
      std::array<double, 4> sums{double(counts_.requests), double(counts_.cached),
                                 double(counts_.failed), double(counts_.done - counts_.resumed)};
      world.allreduce_sum(sums);
      dist::merge_parts(world, path);
      read_back();
      counts_.requests = static_cast<int64_t>(sums[0]);
      counts_.cached = static_cast<int64_t>(sums[1]);
      counts_.failed = static_cast<int64_t>(sums[2]);
      counts_.done = counts_.resumed + static_cast<int64_t>(sums[3]);
    }

    RunResult out;
    out.counts = counts_;
    out.complete = true;
    for (auto& r : results) {
      if (r)
        out.items.push_back(std::move(*r));
      else
        out.complete = false;
    }
    return out;
  }

 private:
  // Submits items and handles replies until nothing is in flight and nothing is left to start.
  void loop(ResumableJsonlWriter& writer, std::vector<std::optional<ItemResult>>& results,
            std::optional<Error>& first_error, size_t& next) {
    const size_t n = results.size();
    for (;;) {
      const bool stopping = first_error || (o_.interrupted && o_.interrupted());
      while (!stopping && in_flight_ < o_.max_in_flight && next < n) {
        const size_t i = next++;
        if (results[i] || (!mine_.empty() && !mine_[i])) continue;
        start(i);
      }
      if (slots_.empty()) break;
      Completion c = wait();
      Slot& slot = slots_.at(c.item);
      --in_flight_;
      --slot.pending;
      if (!c.result.ok()) {
        if (!slot.error)
          slot.error = fmt::format("task {}, item '{}', request {}: {}", task_.name(),
                                   task_.item_id(c.item), c.request, c.result.error().describe());
      } else {
        ++counts_.requests;
        if (c.result.value().cached) ++counts_.cached;
        slot.responses[c.request] = std::move(c.result).value();
      }
      if (slot.pending == 0 && !slot.error) {
        // Follow-ups (e.g. a retried judge reply) keep the item in flight.
        std::vector<llm::Request> more = task_.follow_up(c.item, slot.responses, slot.round++);
        if (!more.empty()) {
          submit(c.item, std::move(more));
          if (o_.progress) o_.progress(counts_);
          continue;
        }
      }
      if (slot.pending == 0) {
        std::optional<ItemResult> r;
        if (!slot.error) {
          // A reply the task cannot score (e.g. a score response with the wrong number of
          // continuations) fails its item like a backend error: it is not written.
          try {
            r = task_.score(c.item, slot.responses);
            r->id = task_.item_id(c.item);
          } catch (const std::exception& e) {
            slot.error = fmt::format("task {}, item '{}': cannot score the reply: {}", task_.name(),
                                     task_.item_id(c.item), e.what());
          }
        }
        if (slot.error) {
          ++counts_.failed;
          if (o_.stop_on_error && !first_error) first_error = Error(*slot.error);
          if (!o_.stop_on_error) log::warn("{}", *slot.error);
        } else {
          writer.append(to_json(*r));
          results[c.item] = std::move(*r);
          ++counts_.done;
        }
        slots_.erase(c.item);
      }
      if (o_.progress) o_.progress(counts_);
    }
  }

  struct Slot {
    std::vector<llm::Response> responses;
    int pending = 0;
    int round = 0;  // follow-up rounds asked so far
    std::optional<std::string> error;
  };
  struct Completion {
    size_t item = 0, request = 0;
    llm::Result<llm::Response> result;
  };

  void check_config(const fs::path& path) {
    std::ifstream in(path);
    std::string line;
    if (!std::getline(in, line)) return;
    json first;
    try {
      first = json::parse(line);
    } catch (const std::exception&) {
      return;  // a torn first line: the writer drops it
    }
    if (first.value("id", "") != "#config") return;
    if (first.value("task", "") != task_.name() || first.value("config", "") != o_.config)
      throw Error(
          fmt::format("this results file was written by a different run (task or settings "
                      "differ):\n  stored: {} {}\n  now:    {} {}\nUse another -o folder, or "
                      "--fresh to start it anew",
                      first.value("task", ""), first.value("config", ""), task_.name(), o_.config))
          .in_file(path.string())
          .at_line(1);
  }

  void start(size_t i) {
    std::vector<llm::Request> requests = task_.requests(i);
    if (requests.empty())
      throw Error(
          fmt::format("task {}: item '{}' has no requests", task_.name(), task_.item_id(i)));
    submit(i, std::move(requests));
  }

  // Submits `requests` for item i; their responses go after those already in its slot.
  void submit(size_t i, std::vector<llm::Request> requests) {
    Slot& slot = slots_[i];
    const size_t first = slot.responses.size();
    slot.responses.resize(first + requests.size());
    slot.pending += static_cast<int>(requests.size());
    for (size_t j = 0; j < requests.size(); ++j) {
      const size_t k = first + j;
      ++in_flight_;
      backend_.submit(std::move(requests[j]), [this, i, k](llm::Result<llm::Response> result) {
        std::lock_guard lock(mutex_);
        queue_.push_back({i, k, std::move(result)});
        cv_.notify_one();
      });
    }
  }

  Completion wait() {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return !queue_.empty(); });
    Completion c = std::move(queue_.front());
    queue_.pop_front();
    return c;
  }

  llm::Backend& backend_;
  const Task& task_;
  const RunOptions& o_;
  RunCounts counts_;
  std::vector<bool> mine_;  // several processes: the items this rank runs (empty: all)
  int in_flight_ = 0;
  std::unordered_map<size_t, Slot> slots_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Completion> queue_;
};

}  // namespace

RunResult run_task(llm::Backend& backend, const Task& task, const fs::path& results_path,
                   const RunOptions& options) {
  Runner runner(backend, task, options);
  return runner.run(results_path);
}

StoredResults read_results(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw Error("cannot read the results file").in_file(path.string());
  StoredResults out;
  std::string line;
  int64_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty()) continue;
    json j;
    try {
      j = json::parse(line);
    } catch (const std::exception& e) {
      // A torn last line (a killed run) is not an error: the writer drops it on resume.
      if (in.peek() == std::char_traits<char>::eof()) break;
      throw Error(fmt::format("not JSON: {}", e.what())).in_file(path.string()).at_line(number);
    }
    try {
      if (j.value("id", "") == "#config") {
        out.task = j.value("task", "");
        out.config = j.value("config", "");
        continue;
      }
      out.items.push_back(from_json(j));
    } catch (const json::exception& e) {
      throw Error(fmt::format("not an item result: {}", e.what()))
          .in_file(path.string())
          .at_line(number);
    }
  }
  return out;
}

}  // namespace seqit::eval

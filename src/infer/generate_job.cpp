#include "infer/generate_job.h"

#include <fmt/format.h>

#include <array>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "dist/shards.h"
#include "util/error.h"
#include "util/json_io.h"
#include "util/jsonl_writer.h"
#include "util/log.h"
#include "util/progress.h"

namespace seqit::infer {
using nlohmann::json;

PromptBuilder text_prompt_builder(const tokenizer::Tokenizer& tokenizer) {
  return [&tokenizer](const json& record, bool* standalone) {
    auto it = record.find("prompt");
    if (it == record.end() || !it->is_string()) {
      throw Error(record.contains("messages")
                      ? "a record with \"messages\" needs --chat (a chat template)"
                      : "the record has no string \"prompt\"")
          .in_field("prompt");
    }
    *standalone = false;
    return tokenizer.encode(it->get<std::string>());
  };
}

void apply_record_overrides(const json& record, SamplingParams& sampling, StopParams& stop) {
  auto number = [&](const char* key, auto& target) {
    auto it = record.find(key);
    if (it == record.end() || it->is_null()) return;
    if (!it->is_number()) throw Error(fmt::format("\"{}\" must be a number", key)).in_field(key);
    target = it->get<std::remove_reference_t<decltype(target)>>();
  };
  number("max_tokens", stop.max_new_tokens);
  number("temperature", sampling.temperature);
  number("top_k", sampling.top_k);
  number("top_p", sampling.top_p);
  number("min_p", sampling.min_p);
  number("seed", sampling.seed);
  if (auto it = record.find("stop"); it != record.end() && !it->is_null()) {
    if (it->is_string()) {
      stop.stop_strings.push_back(it->get<std::string>());
    } else if (it->is_array()) {
      for (const json& s : *it) {
        if (!s.is_string())
          throw Error("\"stop\" must be a string or a list of strings").in_field("stop");
        stop.stop_strings.push_back(s.get<std::string>());
      }
    } else {
      throw Error("\"stop\" must be a string or a list of strings").in_field("stop");
    }
  }
}

GenerateJobStats run_generate_job(const model::LlamaModel& model,
                                  const tokenizer::Tokenizer& tokenizer,
                                  const GenerateJobOptions& options,
                                  const PromptBuilder& build_prompt) {
  dist::Communicator& world = options.world ? *options.world : dist::world();
  const bool shared = world.size() > 1;
  if (world.rank() == 0) {  // a stopped run's parts first (or, fresh, away with them)
    if (options.fresh) {
      remove_jsonl_parts(options.out);
      if (shared) {  // the ranks append to parts: the output starts empty here
        ResumableJsonlWriter truncate(options.out, "id", true);
      }
    } else if (const int64_t moved = merge_jsonl_parts(options.out); moved > 0) {
      log::info("{}: {} outputs of a stopped run merged from its part files", options.out.string(),
                moved);
    }
  }
  if (shared) world.barrier();
  // One process appends to the output itself; several each to a part of their own, knowing what
  // the output already holds (only rank 0 ever writes the output).
  ResumableJsonlWriter out(shared ? jsonl_part_path(options.out, world.rank()) : options.out, "id",
                           options.fresh || shared);
  std::unordered_set<std::string> done;
  if (shared && !options.fresh && std::filesystem::exists(options.out)) {
    JsonlReader previous(options.out);
    json row;
    while (previous.next(row)) done.insert(out.id_of(row));
  }
  auto already_done = [&](const json& id) {
    return shared ? done.count(out.id_of(json{{"id", id}})) != 0 : out.has_id_value(id);
  };
  JsonlReader in(options.prompts);
  GenerateJobStats stats;
  stats.skipped = 0;
  Engine engine(model, &tokenizer, options.engine);
  std::map<RequestId, json> pending_ids;  // request -> the record's id value
  Progress progress("generate", -1, "prompts");
  bool input_done = false;
  // Keep a few more requests queued than the batch holds, so freed places refill at once, while
  // never reading the whole input into memory.
  const auto queue_target = static_cast<size_t>(2 * options.engine.max_batch);
  json record;
  while (!input_done || !engine.idle()) {
    while (!input_done && pending_ids.size() < queue_target) {
      if (!in.next(record)) {
        input_done = true;
        break;
      }
      ErrorContext where;
      where.file = in.path();
      where.line = in.line();
      where.record = in.record();
      if (shared && !dist::runs_item(world, in.record())) continue;  // another rank's
      try {
        if (!record.is_object()) throw Error("a prompt record must be a JSON object");
        json id = record.contains("id") ? record["id"] : json(in.record());
        if (already_done(id)) {
          ++stats.skipped;
          continue;
        }
        GenerationRequest request;
        request.sampling = options.sampling;
        request.stop = options.stop;
        apply_record_overrides(record, request.sampling, request.stop);
        request.prompt = build_prompt(record, &request.text_standalone);
        RequestId rid = engine.add(std::move(request));
        pending_ids[rid] = id;
      } catch (Error& e) {
        e.add_context(where);
        throw;
      }
    }
    for (StepEvent& e : engine.step()) {
      if (!e.finished) continue;
      const GenerationResult& r = e.result;
      json row = {{"id", pending_ids.at(e.id)},
                  {"output", r.text},
                  {"finish_reason", std::string(finish_reason_name(r.finish))},
                  {"prompt_tokens", r.prompt_tokens},
                  {"completion_tokens", r.tokens.size()}};
      if (options.include_ids) row["token_ids"] = r.tokens;
      out.append(row);
      pending_ids.erase(e.id);
      ++stats.written;
      stats.tokens += static_cast<int64_t>(r.tokens.size());
      progress.add(1);
    }
  }
  progress.finish();
  if (shared) {
    std::array<double, 3> sums{double(stats.written), double(stats.skipped), double(stats.tokens)};
    world.allreduce_sum(sums);
    stats = {static_cast<int64_t>(sums[0]), static_cast<int64_t>(sums[1]),
             static_cast<int64_t>(sums[2])};
    out.sync();
    dist::merge_parts(world, options.out);
  }
  if (stats.skipped > 0)
    log::info("{}: {} prompts were already done (resumed)", options.out.string(), stats.skipped);
  return stats;
}

}  // namespace seqit::infer

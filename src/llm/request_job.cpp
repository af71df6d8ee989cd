#include "llm/request_job.h"

#include <fmt/format.h>

#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "llm/openai_json.h"
#include "util/error.h"
#include "util/json_io.h"
#include "util/jsonl_writer.h"
#include "util/log.h"

namespace seqit::llm {
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// The request a record describes; throws seqit::Error naming the field.
Request request_from_record(const json& record, const RequestJobOptions& options) {
  if (!record.is_object()) throw Error("a request must be a JSON object");
  Request r;
  r.model = options.model;
  if (auto m = record.find("model"); m != record.end() && !m->is_null()) {
    if (!m->is_string()) throw Error("must be a string").in_field("model");
    r.model = m->get<std::string>();
  }
  auto messages = record.find("messages");
  auto prompt = record.find("prompt");
  auto continuations = record.find("continuations");
  if (messages != record.end()) {
    r.kind = RequestKind::chat;
    if (!messages->is_array() || messages->empty())
      throw Error("must be a non-empty array of {\"role\", \"content\"}").in_field("messages");
    for (size_t i = 0; i < messages->size(); ++i) {
      const json& m = (*messages)[i];
      const std::string field = fmt::format("messages[{}]", i);
      if (!m.is_object() || !m.contains("role") || !m["role"].is_string() ||
          !m.contains("content") || !m["content"].is_string())
        throw Error("must be {\"role\": string, \"content\": string}").in_field(field);
      r.messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
    }
  } else if (prompt != record.end()) {
    if (!prompt->is_string()) throw Error("must be a string").in_field("prompt");
    r.prompt = prompt->get<std::string>();
    r.kind = RequestKind::completion;
    if (continuations != record.end()) {
      r.kind = RequestKind::score;
      if (!continuations->is_array() || continuations->empty())
        throw Error("must be a non-empty array of strings").in_field("continuations");
      for (size_t i = 0; i < continuations->size(); ++i) {
        if (!(*continuations)[i].is_string())
          throw Error("must be a string").in_field(fmt::format("continuations[{}]", i));
        r.continuations.push_back((*continuations)[i].get<std::string>());
      }
    }
  } else {
    throw Error(
        "a request needs \"messages\" (chat) or \"prompt\" (completion, or score with "
        "\"continuations\")");
  }
  Result<SamplingParams> params = parse_sampling_params(record, options.defaults);
  if (!params.ok()) throw Error(params.error().message);
  r.params = params.value();
  if (r.kind != RequestKind::score) {
    Result<ResponseFormat> format = parse_response_format(record);
    if (!format.ok()) throw Error(format.error().message);
    r.response_format = format.value();
    if (r.kind == RequestKind::chat)
      if (auto problem = parse_tools(record, r)) throw Error(problem->message);
    if (auto lp = record.find("logprobs"); lp != record.end()) {
      if (!lp->is_boolean()) throw Error("must be true or false").in_field("logprobs");
      r.logprobs = lp->get<bool>();
    }
    if (auto top = record.find("top_logprobs"); top != record.end()) {
      if (!top->is_number_integer()) throw Error("must be an integer").in_field("top_logprobs");
      r.top_logprobs = top->get<int>();
    }
  }
  if (auto problem = validate_request(r)) throw Error(problem->message);
  return r;
}

json record_from_response(const json& id, const Request& request, const Response& response) {
  json out = {{"id", id}};
  if (request.kind == RequestKind::score) {
    out["logprobs"] = response.logprobs;
    out["token_counts"] = response.token_counts;
  } else {
    out["text"] = response.text();
    out["finish_reason"] = response.choices.empty() ? "" : response.choices.front().finish_reason;
    if (!response.choices.empty() && !response.choices.front().tool_calls.empty())
      out["tool_calls"] = tool_calls_json(response.choices.front().tool_calls);
    if (response.choices.size() > 1) {
      json choices = json::array();
      for (const auto& c : response.choices) choices.push_back(c.text);
      out["choices"] = std::move(choices);
    }
    if (request.logprobs && !response.choices.empty()) {
      // The first choice's tokens, in OpenAI's chat shape.
      json content = json::array();
      for (const auto& t : response.choices.front().logprobs)
        content.push_back(generated_token_json(t));
      out["logprobs"] = {{"content", std::move(content)}};
    }
  }
  out["usage"] = {{"prompt_tokens", response.usage.prompt_tokens},
                  {"completion_tokens", response.usage.completion_tokens}};
  out["model"] = response.model;
  out["cached"] = response.cached;
  if (!response.format_check.empty())  // who held the response_format: "server" or "seqit"
    out["format_check"] = {{"by", response.format_check}, {"attempts", response.format_attempts}};
  return out;
}

}  // namespace

RequestJobSummary run_request_job(Backend& backend, const fs::path& input, const fs::path& output,
                                  const RequestJobOptions& options) {
  ResumableJsonlWriter writer(output, "id", options.fresh);
  JsonlReader reader(input);
  RequestJobSummary summary;
  std::mutex mutex;
  std::condition_variable changed;
  int64_t outstanding = 0;
  std::optional<Error> first_failure;
  std::unordered_set<std::string> seen_ids;

  auto wait_below = [&](int64_t limit) {
    std::unique_lock lock(mutex);
    changed.wait(lock, [&] { return outstanding < limit; });
  };

  json record;
  // A record that cannot be sent: with stop_on_error, wait for what is in flight and throw;
  // otherwise report it and go on.
  auto reject = [&](const Error& e) {
    if (options.stop_on_error) {
      wait_below(1);
      throw e;
    }
    log::warn("{} (skipped)", e.what());
    ++summary.invalid;
  };
  for (;;) {
    {
      std::lock_guard lock(mutex);
      if (first_failure && options.stop_on_error) break;
    }
    bool more;
    try {
      more = reader.next(record);
    } catch (const Error& e) {
      reject(e);
      continue;
    }
    if (!more) break;
    ++summary.records;
    const int64_t line = reader.line(), index = reader.record();
    ErrorContext where{input.string(), line, 0, index, {}};
    json id = record.is_object() && record.contains("id") ? record["id"] : json(index);
    const std::string id_text = writer.id_of(json{{"id", id}});
    if (!seen_ids.insert(id_text).second) {
      reject(Error(fmt::format("id {} appears more than once in the input", id.dump()))
                 .add_context(where));
      continue;
    }
    if (writer.has_id(id_text)) {
      ++summary.already_done;
      continue;
    }
    Request request;
    try {
      request = request_from_record(record, options);
    } catch (Error& e) {
      reject(e.add_context(where));
      continue;
    }
    wait_below(std::max(1, options.max_outstanding));
    {
      std::lock_guard lock(mutex);
      ++outstanding;
    }
    Request kept = request;  // the callback needs the kind (the backend consumes `request`)
    backend.submit(
        std::move(request), [&, id, where, kept = std::move(kept)](Result<Response> result) {
          std::unique_lock lock(mutex);
          if (result.ok()) {
            try {
              writer.append(record_from_response(id, kept, result.value()));
              ++summary.answered;
              if (result.value().cached)
                ++summary.cached;
              else {
                summary.usage.prompt_tokens += result.value().usage.prompt_tokens;
                summary.usage.completion_tokens += result.value().usage.completion_tokens;
              }
            } catch (const Error& e) {
              ++summary.failed;
              if (!first_failure) first_failure = e;
            }
          } else {
            ++summary.failed;
            Error e = Error(fmt::format("id {}: {}", id.dump(), result.error().describe()))
                          .add_context(where);
            if (options.stop_on_error) {
              if (!first_failure) first_failure = e;
            } else {
              log::warn("{}", e.what());
            }
          }
          --outstanding;
          lock.unlock();
          changed.notify_all();
          if (options.on_progress) options.on_progress();
        });
  }
  wait_below(1);
  if (first_failure && options.stop_on_error) throw *first_failure;
  return summary;
}

}  // namespace seqit::llm

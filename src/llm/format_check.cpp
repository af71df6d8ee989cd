#include "llm/format_check.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

#include "infer/constraint.h"
#include "util/error.h"
#include "util/log.h"

namespace seqit::llm {

namespace {
std::shared_ptr<const infer::Constraint> compile(const ResponseFormat& f) {
  switch (f.kind) {
    case ResponseFormat::Kind::json_object:
      return infer::Constraint::json_object();
    case ResponseFormat::Kind::json_schema:
      return infer::Constraint::json_schema(nlohmann::ordered_json::parse(f.schema));
    case ResponseFormat::Kind::regex:
      return infer::Constraint::regex(f.pattern);
    case ResponseFormat::Kind::choice:
      return infer::Constraint::choice(f.choices);
    case ResponseFormat::Kind::text:
      break;
  }
  return nullptr;
}
}  // namespace

std::shared_ptr<const infer::Constraint> compile_response_format(const ResponseFormat& f) {
  if (f.kind == ResponseFormat::Kind::text) return nullptr;
  static std::mutex mutex;
  static std::map<std::string, std::shared_ptr<const infer::Constraint>> cache;
  const std::string key = fmt::format("{}\n{}\n{}\n{}", to_string(f.kind), f.schema, f.pattern,
                                      fmt::join(f.choices, "\x1f"));
  {
    std::lock_guard lock(mutex);
    if (auto it = cache.find(key); it != cache.end()) return it->second;
  }
  // Compiled outside the lock: a new schema does not hold up requests with known formats.
  std::shared_ptr<const infer::Constraint> c = compile(f);
  std::lock_guard lock(mutex);
  if (cache.size() >= 64) cache.clear();  // a bound, not an LRU: formats are few
  cache.emplace(key, c);
  return c;
}

namespace {
// Whether an HTTP 400 refuses the request's format field (rather than something else in it).
bool refuses_format(const LlmError& e) {
  if (e.kind != ErrorKind::invalid_request || (e.http_status != 400 && e.http_status != 422))
    return false;
  std::string m = e.message;
  std::transform(m.begin(), m.end(), m.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const char* field : {"response_format", "guided_regex", "guided_choice", "json_schema"})
    if (m.find(field) != std::string::npos) return true;
  return false;
}

uint64_t attempt_seed(const std::optional<uint64_t>& seed, int attempt) {
  // SplitMix64 of (seed, attempt): a new, reproducible seed for each repeat.
  uint64_t z = seed.value_or(0x5eed) + 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(attempt);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return (z ^ (z >> 31)) & 0x7fffffffffffffffull;
}
}  // namespace

struct FormatCheckedBackend::Call {
  Request request;
  ResponseCallback done;
  std::shared_ptr<const infer::Constraint> constraint;
  int attempt = 0;           // repeats after a reply outside the format
  bool with_format = false;  // the last send carried the format field
};

FormatCheckedBackend::FormatCheckedBackend(std::shared_ptr<Backend> inner, int max_attempts)
    : inner_(std::move(inner)), max_attempts_(std::max(1, max_attempts)) {}

FormatCheckedBackend::~FormatCheckedBackend() {
  std::unique_lock lock(mutex_);
  idle_.wait(lock, [this] { return sent_ == 0; });
}

std::vector<std::string> FormatCheckedBackend::refused_formats() const {
  std::vector<std::string> out;
  for (size_t k = 0; k < refused_.size(); ++k)
    if (refused_[k].load()) out.emplace_back(to_string(static_cast<ResponseFormat::Kind>(k)));
  return out;
}

void FormatCheckedBackend::submit(Request request, ResponseCallback done) {
  if (request.response_format.kind == ResponseFormat::Kind::text ||
      request.kind == RequestKind::score) {
    inner_->submit(std::move(request), std::move(done));
    return;
  }
  auto call = std::make_shared<Call>();
  try {
    call->constraint = compile_response_format(request.response_format);
  } catch (const std::exception& e) {
    done(LlmError{
        ErrorKind::invalid_request, fmt::format("response_format: {}", e.what()), 0, 0, {}});
    return;
  }
  call->request = std::move(request);
  call->done = std::move(done);
  send(std::move(call));
}

void FormatCheckedBackend::send(std::shared_ptr<Call> call) {
  Request r = call->request;
  const auto kind = static_cast<size_t>(r.response_format.kind);
  call->with_format = !refused_[kind].load();
  if (!call->with_format) r.response_format = {};
  if (call->attempt > 0) r.params.seed = attempt_seed(call->request.params.seed, call->attempt);
  {
    std::lock_guard lock(mutex_);
    ++sent_;
  }
  inner_->submit(std::move(r), [this, call](Result<Response> result) {
    on_result(call, std::move(result));
    std::lock_guard lock(mutex_);
    if (--sent_ == 0) idle_.notify_all();
  });
}

void FormatCheckedBackend::on_result(std::shared_ptr<Call> call, Result<Response> result) {
  const ResponseFormat& f = call->request.response_format;
  if (!result.ok()) {
    if (call->with_format && refuses_format(result.error())) {
      if (!refused_[static_cast<size_t>(f.kind)].exchange(true))
        log::warn(
            "llm: the server refused response format {} ({}); sending it without from now "
            "on and checking the replies here",
            to_string(f.kind), result.error().message);
      send(std::move(call));  // the same attempt, without the field
      return;
    }
    finish(call, std::move(result));
    return;
  }
  Response& response = result.value();
  const Choice* outside = nullptr;
  for (const Choice& c : response.choices)
    if (!call->constraint->matches(c.text)) {
      outside = &c;
      break;
    }
  if (outside == nullptr) {
    response.format_check = call->with_format ? "server" : "seqit";
    response.format_attempts = call->attempt + 1;
    finish(call, std::move(result));
    return;
  }
  if (call->attempt + 1 < max_attempts_ && !call->request.on_delta) {
    ++call->attempt;
    send(std::move(call));
    return;
  }
  // Attempts spent: the last reply goes back marked, for the caller's own parsing to judge (an
  // error would stop runs whose parsers already count unparsable replies).
  response.format_check = "failed";
  response.format_attempts = call->attempt + 1;
  finish(call, std::move(result));
}

void FormatCheckedBackend::finish(const std::shared_ptr<Call>& call, Result<Response> result) {
  try {
    call->done(std::move(result));
  } catch (const std::exception& e) {
    log::error("llm: a response callback threw: {}", e.what());
  }
}

}  // namespace seqit::llm

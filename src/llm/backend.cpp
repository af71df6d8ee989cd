#include "llm/backend.h"

#include <fmt/format.h>

#include <cmath>

#include "util/error.h"

namespace seqit::llm {

const char* to_string(RequestKind kind) {
  switch (kind) {
    case RequestKind::chat:
      return "chat";
    case RequestKind::completion:
      return "completion";
    case RequestKind::score:
      return "score";
  }
  return "?";
}

const char* to_string(ResponseFormat::Kind kind) {
  switch (kind) {
    case ResponseFormat::Kind::text:
      return "text";
    case ResponseFormat::Kind::json_object:
      return "json_object";
    case ResponseFormat::Kind::json_schema:
      return "json_schema";
    case ResponseFormat::Kind::regex:
      return "regex";
    case ResponseFormat::Kind::choice:
      return "choice";
  }
  return "?";
}

const char* to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::invalid_request:
      return "invalid request";
    case ErrorKind::authentication:
      return "authentication failed";
    case ErrorKind::not_found:
      return "not found";
    case ErrorKind::rate_limited:
      return "rate limited";
    case ErrorKind::server:
      return "server error";
    case ErrorKind::network:
      return "network error";
    case ErrorKind::timeout:
      return "timeout";
    case ErrorKind::cancelled:
      return "cancelled";
    case ErrorKind::bad_response:
      return "bad response";
    case ErrorKind::internal:
      return "internal error";
  }
  return "?";
}

const std::string& Response::text() const {
  static const std::string empty;
  return choices.empty() ? empty : choices.front().text;
}

std::string LlmError::describe() const {
  std::string out = to_string(kind);
  if (http_status != 0) out += fmt::format(" (HTTP {})", http_status);
  if (attempts > 1) out += fmt::format(" after {} attempts", attempts);
  if (!url.empty()) out += fmt::format(" [{}]", url);
  if (!message.empty()) out += ": " + message;
  return out;
}

void throw_llm_error(const LlmError& error) {
  throw Error(error.describe());
}

std::future<Result<Response>> Backend::submit_async(Request request) {
  auto promise = std::make_shared<std::promise<Result<Response>>>();
  auto future = promise->get_future();
  submit(std::move(request),
         [promise](Result<Response> result) { promise->set_value(std::move(result)); });
  return future;
}

std::future<Result<Response>> Backend::chat_async(std::vector<Message> messages,
                                                  SamplingParams params) {
  Request r;
  r.kind = RequestKind::chat;
  r.messages = std::move(messages);
  r.params = std::move(params);
  return submit_async(std::move(r));
}

std::future<Result<Response>> Backend::complete_async(std::string prompt, SamplingParams params) {
  Request r;
  r.kind = RequestKind::completion;
  r.prompt = std::move(prompt);
  r.params = std::move(params);
  return submit_async(std::move(r));
}

std::future<Result<Response>> Backend::score_async(std::string prompt,
                                                   std::vector<std::string> continuations) {
  Request r;
  r.kind = RequestKind::score;
  r.prompt = std::move(prompt);
  r.continuations = std::move(continuations);
  return submit_async(std::move(r));
}

Result<Response> Backend::chat(std::vector<Message> messages, SamplingParams params) {
  return chat_async(std::move(messages), std::move(params)).get();
}
Result<Response> Backend::complete(std::string prompt, SamplingParams params) {
  return complete_async(std::move(prompt), std::move(params)).get();
}
Result<Response> Backend::score(std::string prompt, std::vector<std::string> continuations) {
  return score_async(std::move(prompt), std::move(continuations)).get();
}

std::optional<LlmError> validate_request(const Request& request) {
  auto invalid = [](std::string message) {
    return LlmError{ErrorKind::invalid_request, std::move(message), 0, 0, {}};
  };
  const SamplingParams& p = request.params;
  if (request.kind == RequestKind::chat && request.messages.empty())
    return invalid("'messages' must hold at least one message");
  if (request.kind == RequestKind::score && request.continuations.empty())
    return invalid("a score request needs at least one continuation");
  if (request.kind != RequestKind::score) {
    if (p.n < 1) return invalid(fmt::format("'n' must be at least 1, got {}", p.n));
    if (p.max_tokens < 0)
      return invalid(fmt::format("'max_tokens' must be >= 0, got {}", p.max_tokens));
    if (!(p.temperature >= 0) || !std::isfinite(p.temperature))
      return invalid(fmt::format("'temperature' must be >= 0, got {}", p.temperature));
    if (!(p.top_p > 0 && p.top_p <= 1))
      return invalid(fmt::format("'top_p' must be in (0, 1], got {}", p.top_p));
    if (p.top_k < 0) return invalid(fmt::format("'top_k' must be >= 0, got {}", p.top_k));
    for (const auto& s : p.stop)
      if (s.empty()) return invalid("'stop' strings must not be empty");
    if (request.top_logprobs < 0 || request.top_logprobs > 20)
      return invalid(
          fmt::format("'top_logprobs' must be from 0 to 20, got {}", request.top_logprobs));
    if (request.top_logprobs > 0 && !request.logprobs)
      return invalid("'top_logprobs' needs 'logprobs' to be true");
  }
  return std::nullopt;
}

}  // namespace seqit::llm

// llm::Backend: one interface for asking a language model, whether it runs in this process (the
// local engine over infer/) or behind an OpenAI-compatible server (vLLM, llama.cpp, Ollama, OpenAI,
// or `seqit serve`). seqinstruct/ and eval/ talk only to this interface.
//
// Three kinds of request: chat (messages -> text), complete (prompt -> text) and score (the
// log-probability of each given continuation of a prompt). Every request is asynchronous
// underneath: submit() returns at once and calls `done` later (from a backend thread), so a caller
// keeps as many requests in flight as the backend allows; the *_async helpers wrap that in a
// std::future, and the plain helpers block. Failures come back as values (LlmError) with enough
// context to print or retry.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace seqit::llm {

// A function call the model made (OpenAI's tool_calls[]: {id, type: "function", function: {name,
// arguments}}); `arguments` is JSON text, as OpenAI sends it.
struct ToolCall {
  std::string id;
  std::string name;
  std::string arguments;
  bool operator==(const ToolCall&) const = default;
};

struct Message {
  std::string role;  // "system", "user", "assistant", "tool" (any string is passed through)
  std::string content;
  // Default-initialised so that {role, content} stays a complete initialiser.
  std::vector<ToolCall> tool_calls = {};  // assistant: the calls it made
  std::string tool_call_id = {};          // tool: the call this message answers
  std::string name = {};                  // tool: the function's name (optional)
  bool operator==(const Message&) const = default;
};

// Which tools the model may call (OpenAI's tool_choice): auto (it decides), none (text only),
// required (at least one call), or the named function.
struct ToolChoice {
  enum class Mode { automatic, none, required, function };
  Mode mode = Mode::automatic;
  std::string function;  // Mode::function
  bool operator==(const ToolChoice&) const = default;
};

// Sampling parameters, with OpenAI's meaning. temperature 0 is greedy decoding.
struct SamplingParams {
  double temperature = 1.0;
  double top_p = 1.0;
  int top_k = 0;  // 0 = no top-k cut (not an OpenAI field; vLLM, llama.cpp and Ollama accept it)
  int max_tokens = 256;           // new tokens per choice
  std::vector<std::string> stop;  // generation ends before the first occurrence of any of these
  std::optional<uint64_t> seed;   // makes sampling reproducible where the backend supports it
  int n = 1;                      // independent choices per request
  bool operator==(const SamplingParams&) const = default;
};

// Structured output for chat and completion requests: the answer is held to a format. The local
// backend enforces it while decoding (infer/constraint.h: every answer parses); the HTTP backend
// sends json_object / json_schema as OpenAI's response_format for the server to enforce.
struct ResponseFormat {
  enum class Kind { text, json_object, json_schema, regex, choice };
  Kind kind = Kind::text;
  std::string name;                  // json_schema: the schema's name (OpenAI requires one)
  std::string schema;                // json_schema: the schema as JSON text (its key order kept)
  std::string pattern;               // regex
  std::vector<std::string> choices;  // choice
  bool operator==(const ResponseFormat&) const = default;
};
const char* to_string(ResponseFormat::Kind kind);  // "text", "json_object", ...

// One generated token with its log-probability (Request::logprobs), as OpenAI's chat logprobs
// give it: the token's bytes, natural-log probability under the model's distribution (before
// temperature and filters), and the most likely alternatives of that step.
struct GeneratedToken {
  std::string token;  // the token's output bytes
  double logprob = 0;
  std::vector<std::pair<std::string, double>> top;  // Request::top_logprobs of them, best first
  bool operator==(const GeneratedToken&) const = default;
};

enum class RequestKind { chat, completion, score };
const char* to_string(RequestKind kind);

struct Request {
  RequestKind kind = RequestKind::completion;
  std::string model;                       // empty: the backend's default model
  std::vector<Message> messages;           // chat
  std::string prompt;                      // completion and score
  std::vector<std::string> continuations;  // score: each is scored as prompt + continuation
  SamplingParams params;                   // chat and completion
  ResponseFormat response_format;          // chat and completion
  // chat: the functions the model may call, as the JSON text of OpenAI's `tools` array ([{"type":
  // "function", "function": {"name", "description", "parameters"}}], key order kept: the chat
  // template prints it); empty: none. Rendered through the model's chat template; calls come back
  // in Choice::tool_calls.
  std::string tools;
  ToolChoice tool_choice;
  // chat and completion: return every generated token's log-probability (Choice::logprobs), and
  // the top_logprobs (0..20) most likely tokens of each step.
  bool logprobs = false;
  int top_logprobs = 0;
  // score: also return every token of prompt + continuation with its log-probability
  // (Response::token_logprobs), as an OpenAI echo + logprobs completion does.
  bool token_logprobs = false;

  // Not part of the request's identity (the cache ignores them):
  // Called with each piece of text as it is generated (choice index, text delta) and, with
  // `logprobs`, the tokens generated since the previous call (their text is in this delta or still
  // held back: the concatenation of every call's tokens is Choice::logprobs), where the backend
  // streams (the local backend does, once per decoding step; the HTTP backend delivers the whole
  // text at the end). A call may bring tokens and no text.
  std::function<void(int choice, std::string_view delta, const std::vector<GeneratedToken>& tokens)>
      on_delta;
  // Set to true to abandon the request (e.g. the client of a streaming server disconnected); the
  // backend then finishes it early with ErrorKind::cancelled.
  std::shared_ptr<std::atomic<bool>> cancelled;
};

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t total() const { return prompt_tokens + completion_tokens; }
};

struct Choice {
  std::string text;
  // "stop" (end of sequence or a stop string), "length" (max_tokens) or "tool_calls"
  std::string finish_reason;
  std::vector<GeneratedToken> logprobs;   // with Request::logprobs: every generated token
  std::vector<ToolCall> tool_calls = {};  // chat with tools: the calls read from the reply
};

// One token of a scored text.
struct TokenLogprob {
  std::string text;               // the token's bytes
  std::optional<double> logprob;  // natural log; nullopt when not predicted (the first token)
  size_t offset = 0;              // byte offset in prompt + continuation where the token starts
};

struct Response {
  std::vector<Choice> choices;   // chat and completion: params.n of them
  std::vector<double> logprobs;  // score: natural-log probability of each continuation (summed)
  std::vector<int64_t> token_counts;  // score: how many tokens each continuation covered
  // score with Request::token_logprobs: per continuation, every token of prompt + continuation.
  std::vector<std::vector<TokenLogprob>> token_logprobs;
  Usage usage;
  std::string model;    // the model that answered, as the backend names it
  bool cached = false;  // answered from the response cache, no request sent
  // A request with a response_format through FormatCheckedBackend (llm/format_check.h): "server"
  // (the server took the format; the reply was checked), "seqit" (the server refused the field;
  // the reply was checked and asked again as needed) or "failed" (no reply matched within the
  // attempts: the last one), and the attempts it took. Empty otherwise.
  std::string format_check;
  int format_attempts = 0;

  // The first choice's text (what a caller with n = 1 wants).
  const std::string& text() const;
};

enum class ErrorKind {
  invalid_request,  // the request itself is wrong (HTTP 400, 413, 422); retrying will not help
  authentication,   // missing or wrong API key (401, 403)
  not_found,        // unknown model or endpoint (404)
  rate_limited,     // 429 after all retries
  server,           // 5xx after all retries
  network,          // connection refused/reset, DNS, TLS, after all retries
  timeout,          // the per-request timeout passed, after all retries
  cancelled,        // abandoned by the caller or by shutdown
  bad_response,     // the server answered 2xx with something that is not the expected JSON
  internal,         // a bug or an unexpected exception inside the backend
};
const char* to_string(ErrorKind kind);

struct LlmError {
  ErrorKind kind = ErrorKind::internal;
  std::string message;  // what went wrong, e.g. the server's error.message
  int http_status = 0;  // last HTTP status seen; 0 = none (network error, local backend)
  int attempts = 0;     // requests sent, retries included (0 when nothing was sent)
  std::string url;      // the endpoint of the last attempt; empty for the local backend

  // "timeout after 3 attempts (last: http://127.0.0.1:8080/v1/completions): <message>"
  std::string describe() const;
};

// A value or an LlmError. value() on an error throws seqit::Error with describe()'s text.
template <typename T>
class Result {
 public:
  Result(T value) : data_(std::move(value)) {}
  Result(LlmError error) : data_(std::move(error)) {}

  bool ok() const { return data_.index() == 0; }
  explicit operator bool() const { return ok(); }
  const T& value() const&;
  T& value() &;
  T&& value() &&;
  const LlmError& error() const { return std::get<LlmError>(data_); }

 private:
  std::variant<T, LlmError> data_;
};

[[noreturn]] void throw_llm_error(const LlmError& error);

template <typename T>
const T& Result<T>::value() const& {
  if (!ok()) throw_llm_error(error());
  return std::get<T>(data_);
}
template <typename T>
T& Result<T>::value() & {
  if (!ok()) throw_llm_error(error());
  return std::get<T>(data_);
}
template <typename T>
T&& Result<T>::value() && {
  if (!ok()) throw_llm_error(error());
  return std::get<T>(std::move(data_));
}

using ResponseCallback = std::function<void(Result<Response>)>;

class Backend {
 public:
  virtual ~Backend() = default;

  // Queues `request`; `done` is called exactly once, later, from a backend thread (or, for requests
  // rejected at once, from the calling thread), with the response or an error. Callbacks must be
  // quick (hand heavy work to another thread): they run on the thread that drives the backend.
  virtual void submit(Request request, ResponseCallback done) = 0;

  // The model a request with an empty `model` goes to.
  virtual std::string default_model() const = 0;
  // A short description for logs, e.g. "http (2 urls, 16 in flight)".
  virtual std::string describe() const = 0;

  // Futures over submit().
  std::future<Result<Response>> submit_async(Request request);
  std::future<Result<Response>> chat_async(std::vector<Message> messages,
                                           SamplingParams params = {});
  std::future<Result<Response>> complete_async(std::string prompt, SamplingParams params = {});
  std::future<Result<Response>> score_async(std::string prompt,
                                            std::vector<std::string> continuations);

  // Blocking helpers.
  Result<Response> chat(std::vector<Message> messages, SamplingParams params = {});
  Result<Response> complete(std::string prompt, SamplingParams params = {});
  Result<Response> score(std::string prompt, std::vector<std::string> continuations);
};

// Checks what every backend requires of a request (n >= 1, max_tokens >= 0, 0 <= top_p <= 1,
// temperature >= 0, a non-empty message list or continuation list); nullopt when it is fine.
std::optional<LlmError> validate_request(const Request& request);

}  // namespace seqit::llm

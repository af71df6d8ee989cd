// The OpenAI wire format (chat completions and legacy completions), both directions: what the HTTP
// backend sends and reads, and what `seqit serve` reads and sends. docs/llm.md lists the fields.
//
// Scoring travels as a legacy completion with echo=true, logprobs=1, max_tokens=1 and one prompt
// per continuation (prompt + continuation), as lm-evaluation-harness does: the server returns the
// log-probability of every prompt token with its character offset, and the continuation's score is
// the sum over the tokens that start at or after the end of the prompt (offsets in Unicode code
// points, as OpenAI and vLLM count them). Tokens whose log-probability is null (the first token)
// are not counted.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "llm/backend.h"

namespace seqit::llm {

// --- client side (HTTP backend) ---

// "/chat/completions" for chat, "/completions" for completion and score (appended to a base URL
// that ends in /v1).
const char* endpoint_path(RequestKind kind);
// The JSON body for `request`, addressed to `model`.
nlohmann::json to_openai_request(const Request& request, const std::string& model);
// Reads a 2xx response body. Missing or mistyped fields give ErrorKind::bad_response naming them.
Result<Response> parse_openai_response(const Request& request, const nlohmann::json& body);
// The server's error text from an error body ({"error": {"message": ...}} or {"error": "..."} or
// {"detail": ...}); empty when there is none.
std::string openai_error_message(const nlohmann::json& body);

// A generated token as OpenAI's chat logprobs write it: {"token" (its text, invalid UTF-8 shown as
// U+FFFD), "logprob", "bytes" (exact), "top_logprobs": [{"token", "logprob", "bytes"}]}; reading
// prefers "bytes" when present.
nlohmann::json generated_token_json(const GeneratedToken& t);
// A chat choice's `logprobs` object ({"content": [tokens], "refusal": null}); null for no tokens.
nlohmann::json chat_logprobs_json(const std::vector<GeneratedToken>& tokens);
GeneratedToken generated_token_from_json(const nlohmann::json& j);

// --- the request's identity (for the response cache) ---

// Every field that decides the answer, in a fixed key order: kind, model, messages / prompt /
// continuations, and the sampling parameters. Two requests with equal canonical JSON get the same
// answer from a deterministic backend.
nlohmann::json canonical_request(const Request& request, const std::string& model);

// --- server side (`seqit serve`) and request files (`seqit query`) ---

// The sampling fields of an OpenAI request body (temperature, top_p, top_k, max_tokens or
// max_completion_tokens, stop as a string or array, seed, n); absent fields keep `defaults`.
Result<SamplingParams> parse_sampling_params(const nlohmann::json& body,
                                             const SamplingParams& defaults);

// The structured-output fields of a request body: response_format ({"type": "text" |
// "json_object" | "json_schema", "json_schema": {"name", "schema"}}) or vLLM's guided_regex /
// guided_choice (at most one of them). The schema keeps the key order of `body` (parse it as
// ordered text first where that order matters).
Result<ResponseFormat> parse_response_format(const nlohmann::json& body);
// `tools` and `tool_choice` of a chat request body into `request` (an error names the field).
std::optional<LlmError> parse_tools(const nlohmann::json& body, Request& request);

// One parsed HTTP request: the backend requests it fans out to (one per prompt for a completion
// with a prompt array) and how to answer.
struct ServerRequest {
  RequestKind endpoint = RequestKind::chat;  // chat or completion
  std::string model;                         // as the client named it (empty when absent)
  std::vector<Request> requests;             // generation, or score (echo + logprobs) requests
  bool stream = false;
  bool include_usage_in_stream = false;  // stream_options.include_usage
  bool echo = false;                     // completions: prepend the prompt to each choice's text
  bool logprobs = false;                 // completions: token log-probabilities were asked for
};
// Parses a chat (endpoint == chat) or completion request body. Errors are invalid_request and name
// the field, e.g. "'messages[2].content' must be a string or an array of text parts".
Result<ServerRequest> parse_openai_server_request(RequestKind endpoint, const nlohmann::json& body);
// The same from the raw HTTP body, as the server receives it: text that is not UTF-8, not JSON,
// nested deeper than kMaxJsonDepth or holding a number no double can hold is an invalid_request
// error too (the server's 400), never an exception.
Result<ServerRequest> parse_openai_request_body(RequestKind endpoint, std::string_view body);

// OpenAI's tool_calls array ({"id", "type": "function", "function": {"name", "arguments"}}),
// with "index" per call as stream deltas carry it; and tool_choice.
nlohmann::json tool_calls_json(const std::vector<ToolCall>& calls, bool with_index = false);
nlohmann::json tool_choice_json(const ToolChoice& choice);

// Response bodies. `id` is e.g. "chatcmpl-12", `created` Unix seconds.
nlohmann::json to_openai_chat_response(const Response& response, const std::string& id,
                                       int64_t created, const std::string& model);
// Completion responses: one Response per prompt; choice index = prompt * n + choice.
nlohmann::json to_openai_completion_response(const ServerRequest& request,
                                             const std::vector<Response>& responses,
                                             const std::string& id, int64_t created,
                                             const std::string& model);
// {"error": {"message", "type", "param", "code"}} as OpenAI writes it.
nlohmann::json openai_error_body(const std::string& message, const std::string& type,
                                 const std::string& code = {}, const std::string& param = {});

}  // namespace seqit::llm

// The OpenAI wire format: request bodies the client sends, responses it reads, and the server
// side's parsing (with field-named errors) and response bodies.
#include "llm/openai_json.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace seqit::llm {
namespace {
using nlohmann::json;

Result<ServerRequest> parse_chat(const std::string& text) {
  return parse_openai_server_request(RequestKind::chat, json::parse(text));
}
Result<ServerRequest> parse_completion(const std::string& text) {
  return parse_openai_server_request(RequestKind::completion, json::parse(text));
}
std::string error_of(const Result<ServerRequest>& r) {
  return r.ok() ? "(ok)" : r.error().message;
}

TEST(OpenAiJson, ParsesAChatRequestWithEverySupportedField) {
  auto r = parse_chat(R"({
    "model": "stories", "stream": true, "stream_options": {"include_usage": true},
    "messages": [{"role": "system", "content": "be kind"},
                 {"role": "user", "content": [{"type": "text", "text": "Once "}, {"type": "text", "text": "upon"}]}],
    "temperature": 0.5, "top_p": 0.9, "top_k": 7, "max_completion_tokens": 12, "stop": "\n", "seed": 42, "n": 2,
    "user": "ignored", "presence_penalty": 0})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  const ServerRequest& s = r.value();
  EXPECT_EQ(s.model, "stories");
  EXPECT_TRUE(s.stream);
  EXPECT_TRUE(s.include_usage_in_stream);
  ASSERT_EQ(s.requests.size(), 1u);
  const Request& q = s.requests[0];
  EXPECT_EQ(q.kind, RequestKind::chat);
  ASSERT_EQ(q.messages.size(), 2u);
  EXPECT_EQ(q.messages[1].content, "Once upon");
  EXPECT_EQ(q.params.temperature, 0.5);
  EXPECT_EQ(q.params.top_p, 0.9);
  EXPECT_EQ(q.params.top_k, 7);
  EXPECT_EQ(q.params.max_tokens, 12);
  EXPECT_EQ(q.params.stop, std::vector<std::string>{"\n"});
  EXPECT_EQ(q.params.seed, 42u);
  EXPECT_EQ(q.params.n, 2);
}

TEST(OpenAiJson, AppliesOpenAiDefaults) {
  auto r = parse_completion(R"({"prompt": "x"})");
  ASSERT_TRUE(r.ok());
  const SamplingParams& p = r.value().requests[0].params;
  EXPECT_EQ(p.temperature, 1.0);
  EXPECT_EQ(p.top_p, 1.0);
  EXPECT_EQ(p.max_tokens, 16);
  EXPECT_EQ(p.n, 1);
  EXPECT_FALSE(p.seed.has_value());
  EXPECT_FALSE(r.value().stream);
  auto minus_one = parse_completion(R"({"prompt": "x", "top_k": -1})");  // vLLM's "off"
  EXPECT_EQ(minus_one.value().requests[0].params.top_k, 0);
}

TEST(OpenAiJson, RejectsBadRequestsNamingTheField) {
  EXPECT_EQ(error_of(parse_chat(R"({"model": "m"})")), "'messages' is required");
  EXPECT_EQ(error_of(parse_chat(R"({"messages": []})")), "'messages' must be a non-empty array");
  EXPECT_EQ(error_of(parse_chat(R"({"messages": [{"role": "user"}]})")),
            "'messages[0].content' is required");
  EXPECT_EQ(error_of(parse_chat(R"({"messages": [{"role": "user", "content": 5}]})")),
            "'messages[0].content' must be a string or an array of text parts, got a number");
  EXPECT_EQ(error_of(parse_chat(R"({"messages": [{"content": "x"}]})")),
            "'messages[0].role' must be a string");
  EXPECT_EQ(error_of(parse_chat(
                R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})")),
            "'messages[0].content[0]' must be a text part {\"type\": \"text\", \"text\": ...}");
  EXPECT_EQ(error_of(parse_chat(
                R"({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"})")),
            "'temperature' must be a number, got a string");
  EXPECT_EQ(error_of(parse_chat(R"({"messages": [{"role": "user", "content": "x"}], "n": 0})")),
            "'n' must be between 1 and 128, got 0");
  EXPECT_EQ(error_of(parse_chat(
                R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 1.5})")),
            "'max_tokens' must be an integer, got 1.5");
  EXPECT_EQ(
      error_of(parse_chat(R"({"messages": [{"role": "user", "content": "x"}], "stop": [1]})")),
      "'stop[0]' must be a string");
  EXPECT_EQ(
      error_of(parse_chat(R"({"messages": [{"role": "user", "content": "x"}], "tools": {}})")),
      "'tools' must be an array");
  EXPECT_EQ(
      error_of(parse_chat(R"({"messages": [{"role": "user", "content": "x"}], "functions": []})")),
      "'functions' is not supported by seqit serve");
  EXPECT_EQ(error_of(parse_chat(
                R"({"messages": [{"role": "user", "content": "x"}], "tool_choice": "required"})")),
            "'tool_choice' asks for a tool call, but no 'tools' are given");
  EXPECT_EQ(error_of(parse_chat(R"({"messages": [{"role": "assistant", "tool_calls": [{"type":
                "function", "function": {"name": "f", "arguments": "{bad"}}]}]})")),
            "'messages[0].tool_calls[0].function.arguments' is not JSON text");
  EXPECT_EQ(error_of(parse_chat(
                R"({"messages": [{"role": "user", "content": "x"}], "frequency_penalty": 0.5})")),
            "'frequency_penalty' is not supported by seqit serve (only 0)");
  EXPECT_EQ(error_of(parse_chat(R"([1, 2])")),
            "the request body must be a JSON object, got an array");
  EXPECT_EQ(error_of(parse_completion(R"({"prompt": 5})")),
            "'prompt' must be a string or a non-empty array of strings");
  EXPECT_EQ(error_of(parse_completion(R"({"prompt": [1, 2]})")),
            "'prompt[0]' must be a string (token-id prompts are not supported)");
  EXPECT_EQ(error_of(parse_completion(R"({"prompt": "x", "logprobs": 1})")),
            "'logprobs' is supported only with echo=true (scoring the prompt) by seqit serve");
  auto bad = parse_chat(R"({"model": "m"})");
  EXPECT_EQ(bad.error().kind, ErrorKind::invalid_request);
  EXPECT_EQ(bad.error().http_status, 400);
}

TEST(OpenAiJson, PromptArraysFanOutAndEchoWithLogprobsBecomesScoring) {
  auto r = parse_completion(R"({"prompt": ["a", "b"], "n": 2, "max_tokens": 3})");
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r.value().requests.size(), 2u);
  EXPECT_EQ(r.value().requests[1].prompt, "b");
  EXPECT_EQ(r.value().requests[1].params.n, 2);
  auto s =
      parse_completion(R"({"prompt": ["ab", "cd"], "echo": true, "logprobs": 1, "max_tokens": 1})");
  ASSERT_TRUE(s.ok()) << s.error().message;
  ASSERT_EQ(s.value().requests.size(), 2u);
  EXPECT_EQ(s.value().requests[0].kind, RequestKind::score);
  EXPECT_EQ(s.value().requests[0].prompt, "");
  EXPECT_EQ(s.value().requests[0].continuations, std::vector<std::string>{"ab"});
  EXPECT_TRUE(s.value().requests[0].token_logprobs);
}

TEST(OpenAiJson, ClientRequestBodies) {
  Request chat;
  chat.kind = RequestKind::chat;
  chat.messages = {{"user", "hi"}};
  chat.params.temperature = 0;
  chat.params.max_tokens = 5;
  json body = to_openai_request(chat, "llama");
  EXPECT_EQ(body, json::parse(R"({"model": "llama", "messages": [{"role": "user", "content": "hi"}],
                                   "temperature": 0.0, "top_p": 1.0, "max_tokens": 5})"));
  EXPECT_STREQ(endpoint_path(RequestKind::chat), "/chat/completions");
  EXPECT_STREQ(endpoint_path(RequestKind::completion), "/completions");
  EXPECT_STREQ(endpoint_path(RequestKind::score), "/completions");
}

TEST(OpenAiJson, ReadsResponsesAndReportsWhatIsMissing) {
  Request completion;
  completion.params.n = 2;
  auto ok = parse_openai_response(completion, json::parse(R"({"model": "m", "choices": [
      {"index": 1, "text": "B", "finish_reason": "length"}, {"index": 0, "text": "A", "finish_reason": "stop"}],
      "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}})"));
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok.value().choices[0].text, "A");
  EXPECT_EQ(ok.value().choices[1].text, "B");
  EXPECT_EQ(ok.value().choices[1].finish_reason, "length");
  EXPECT_EQ(ok.value().usage.total(), 7);
  EXPECT_EQ(ok.value().model, "m");

  auto too_few = parse_openai_response(completion, json::parse(R"({"choices": [{"text": "A"}]})"));
  ASSERT_FALSE(too_few.ok());
  EXPECT_EQ(too_few.error().kind, ErrorKind::bad_response);
  EXPECT_EQ(too_few.error().message,
            "asked for n=2 choices, the server returned 1 (some servers ignore 'n')");
  Request chat;
  chat.kind = RequestKind::chat;
  auto missing = parse_openai_response(chat, json::parse(R"({"choices": [{"index": 0}]})"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().message, "'choices[0].message' is missing");
  EXPECT_EQ(parse_openai_response(chat, json::parse(R"({"id": 1})")).error().message,
            "'response.choices' is missing");
  EXPECT_EQ(openai_error_message(json::parse(R"({"error": {"message": "boom", "type": "x"}})")),
            "boom");
  EXPECT_EQ(openai_error_message(json::parse(R"({"error": "flat"})")), "flat");
  EXPECT_EQ(openai_error_message(json::parse(R"({"detail": "fastapi"})")), "fastapi");
}

TEST(OpenAiJson, ScoreResponsesRefuseServersWithoutPromptLogprobs) {
  Request score;
  score.kind = RequestKind::score;
  score.prompt = "a";
  score.continuations = {"b"};
  auto r = parse_openai_response(
      score, json::parse(R"({"choices": [{"index": 0, "text": "ab", "logprobs": null}]})"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("cannot score"), std::string::npos) << r.error().message;
}

TEST(OpenAiJson, ServerResponseBodies) {
  Response r;
  r.choices = {{"Hi there", "stop", {}}};
  r.usage = {5, 2};
  json chat = to_openai_chat_response(r, "chatcmpl-1", 1700000000, "stories");
  EXPECT_EQ(chat["object"], "chat.completion");
  EXPECT_EQ(chat["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(chat["choices"][0]["message"]["content"], "Hi there");
  EXPECT_EQ(chat["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(chat["usage"]["total_tokens"], 7);

  ServerRequest echo;
  echo.endpoint = RequestKind::completion;
  echo.echo = true;
  Request q;
  q.prompt = "Once";
  echo.requests = {q};
  json text = to_openai_completion_response(echo, {r}, "cmpl-1", 1, "stories");
  EXPECT_EQ(text["object"], "text_completion");
  EXPECT_EQ(text["choices"][0]["text"], "OnceHi there");

  // Scoring: offsets are code points, as OpenAI and vLLM count them.
  ServerRequest scoring;
  scoring.endpoint = RequestKind::completion;
  scoring.echo = scoring.logprobs = true;
  Request sq;
  sq.kind = RequestKind::score;
  sq.continuations = {"\u00e9t\u00e9"};
  scoring.requests = {sq};
  Response sr;
  sr.token_logprobs = {{{"\u00e9", std::nullopt, 0}, {"t\u00e9", -1.5, 2}}};
  json scored = to_openai_completion_response(scoring, {sr}, "cmpl-2", 1, "stories");
  const json& lp = scored["choices"][0]["logprobs"];
  EXPECT_EQ(lp["tokens"], json::array({"\u00e9", "t\u00e9"}));
  EXPECT_EQ(lp["token_logprobs"], json::array({nullptr, -1.5}));
  EXPECT_EQ(lp["text_offset"], json::array({0, 1}));

  json err = openai_error_body("bad", "invalid_request_error", "model_not_found", "model");
  EXPECT_EQ(err["error"]["message"], "bad");
  EXPECT_EQ(err["error"]["code"], "model_not_found");
  EXPECT_EQ(err["error"]["param"], "model");
}

TEST(OpenAiJson, CanonicalRequestIsStable) {
  Request a;
  a.kind = RequestKind::chat;
  a.messages = {{"user", "x"}};
  a.params.stop = {"\n"};
  a.params.seed = 3;
  EXPECT_EQ(
      canonical_request(a, "m").dump(),
      R"({"kind":"chat","max_tokens":256,"messages":[["user","x"]],"model":"m","n":1,"seed":3,"stop":["\n"],)"
      R"("temperature":1.0,"top_k":0,"top_p":1.0})");
  // A response format is part of the identity (a plain request's key above did not change).
  Request f = a;
  f.response_format.kind = ResponseFormat::Kind::choice;
  f.response_format.choices = {"yes", "no"};
  const json cf = canonical_request(f, "m");
  EXPECT_EQ(cf["response_format"]["type"], "choice");
  EXPECT_EQ(cf["response_format"]["choices"], json::array({"yes", "no"}));
  Request g = f;
  g.response_format.choices = {"no", "yes"};
  EXPECT_NE(canonical_request(g, "m"), cf);
  // The client body: OpenAI's response_format for JSON kinds, vLLM's guided_* otherwise.
  EXPECT_EQ(to_openai_request(f, "m")["guided_choice"], json::array({"yes", "no"}));
  Request j = a;
  j.response_format.kind = ResponseFormat::Kind::json_schema;
  j.response_format.schema = R"({"type":"object"})";
  const json body = to_openai_request(j, "m");
  EXPECT_EQ(body["response_format"]["type"], "json_schema");
  EXPECT_EQ(body["response_format"]["json_schema"]["schema"], json::parse(R"({"type":"object"})"));
  EXPECT_EQ(body["response_format"]["json_schema"]["strict"], true);
}

TEST(OpenAiJson, ServerReadsResponseFormats) {
  auto parse = [](const std::string& body) {
    return parse_openai_request_body(RequestKind::chat, body);
  };
  auto r = parse(R"({"messages":[{"role":"user","content":"x"}],"response_format":{"type":
      "json_schema","json_schema":{"name":"n","schema":{"properties":{"b":{},"a":{}}}}}})");
  ASSERT_TRUE(r.ok()) << r.error().describe();
  const ResponseFormat& f = r.value().requests[0].response_format;
  EXPECT_EQ(f.kind, ResponseFormat::Kind::json_schema);
  EXPECT_EQ(f.name, "n");
  EXPECT_EQ(f.schema, R"({"properties":{"b":{},"a":{}}})");  // the request's key order
  auto text =
      parse(R"({"messages":[{"role":"user","content":"x"}],"response_format":{"type":"text"}})");
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(text.value().requests[0].response_format.kind, ResponseFormat::Kind::text);
  auto both = parse(R"({"messages":[{"role":"user","content":"x"}],"guided_regex":"a",
                        "guided_choice":["a"]})");
  ASSERT_FALSE(both.ok());
  EXPECT_NE(both.error().message.find("at most one"), std::string::npos);
  auto no_schema = parse(R"({"messages":[{"role":"user","content":"x"}],"response_format":
                            {"type":"json_schema","json_schema":{"name":"n"}}})");
  ASSERT_FALSE(no_schema.ok());
  EXPECT_NE(
      no_schema.error().message.find("'response_format.json_schema.schema' must be an object"),
      std::string::npos);
}

}  // namespace
}  // namespace seqit::llm
